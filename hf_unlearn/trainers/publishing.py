"""Publishing from a trainer, private by construction: transformers' Hub hooks taken over (no Hub call at start-up,
none during training, checkpoints never uploaded) and one push through :func:`hf_unlearn.hub.push_unlearned`."""

from __future__ import annotations

import os

__all__ = ["PublishingMixin"]


class PublishingMixin:
    """``save_model`` (with the lineage), ``init_hf_repo``, ``_push_from_checkpoint`` and ``push_to_hub``."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model`` plus ``hf_unlearn_lineage.json``: the Hub root and every step since, so that the
        result can name its real base and be published or loaded elsewhere (see :mod:`hf_unlearn.hub.lineage`).

        As in transformers, a call from user code with ``push_to_hub=True`` also publishes the saved folder, but
        through hf_unlearn's one publishing path (:meth:`push_to_hub`), after the lineage is written."""
        from ..hub.lineage import write_lineage

        super().save_model(output_dir, _internal_call=True)  # transformers' own push is replaced by the one below
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save and os.path.isdir(output_dir):
            write_lineage(output_dir, self._lineage())
        if self.args.push_to_hub and not _internal_call:
            self._publish(output_dir, commit_message="Model save")

    # Card settings: the training schedule, plus every objective parameter the method's config declares.

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Name the repository and check that a token exists, without calling the Hub: the repository is created,
        private unless ``hub_private_repo=False``, by the push at the end. A missing login fails here, before
        training, rather than after it."""
        from ..hub.push import require_token

        self.push_in_progress = None
        if not self.is_world_process_zero():
            return
        require_token(token or self.args.hub_token)
        self.hub_model_id = self.args.hub_model_id or os.path.basename(os.path.abspath(self.args.output_dir))

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints stay local: they are less unlearned than the final model and hold the training state."""

    def push_to_hub(
        self, commit_message="End of training", blocking=True, token=None, revision=None, private=None, **kwargs
    ):
        """Save, write the card, and publish with :func:`hf_unlearn.hub.push_unlearned`: a repository created private
        (unless ``private=False`` or ``hub_private_repo=False``), model/adapter files, card, plot and aggregate
        results only.

        Unlike ``Trainer.push_to_hub`` (which uploads the whole output folder, ``training_args.bin`` included), only
        :data:`hf_unlearn.hub.ALLOWED_FILES` go up, and a ``results.json`` loses its per-item data first. The upload
        always blocks (``blocking`` is accepted for compatibility). ``kwargs`` go to :meth:`create_model_card`.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        self.save_model(self.args.output_dir, _internal_call=True)  # every rank: a sharded model gathers to save
        return self._publish(
            self.args.output_dir,
            commit_message=commit_message,
            token=token,
            revision=revision,
            private=private,
            **kwargs,
        )

    def _publish(self, folder: str, *, commit_message: str, token=None, revision=None, private=None, **card):
        """Write the card into ``folder`` and push it (main process only)."""
        from ..hub.push import hub_private, push_unlearned

        if not self.is_world_process_zero():
            return None
        a = self.args
        if getattr(self, "hub_model_id", None) is None:
            self.init_hf_repo(token=token)
        self.create_model_card(model_name=self.hub_model_id, output_dir=folder, **card)
        return push_unlearned(
            folder,
            self.hub_model_id,
            private=hub_private(a.hub_private_repo if private is None else private),
            token=token or a.hub_token,
            commit_message=commit_message,
            revision=revision or a.hub_revision,
        )
