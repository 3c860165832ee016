"""The input tables: forget and retain rows tokenised with the chat template, objectives' columns added, reference
log-probs precomputed, and the retain stream re-drawn each epoch."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import ProcessorMixin, TrainerCallback

from ..data.documents import chunk_documents
from ..data.loading import as_rows
from ..data.pairing import ForgetRetainDataset
from ..data.reasoning import check_reasoning_template, reasoning_rows
from ..data.tokenization import tokenize_rows
from ..objective import PrepareContext, Reference

__all__ = ["InputsMixin", "PairingEpoch", "warn_overlap"]

logger = logging.getLogger("hf_unlearn")


def warn_overlap(forget: Any, retain: Any) -> None:
    """Warn when forget sequences also appear in the retain set: the two terms then pull against each other."""
    seen = {tuple(ids) for ids in retain["input_ids"]}
    shared = sum(tuple(ids) in seen for ids in forget["input_ids"])
    if shared:
        warnings.warn(
            f"{shared} of {len(forget)} forget rows also appear in the retain set (same prompt and answer); the forget "
            "and retain terms then pull the same sequences in opposite directions. Remove them from the retain set.",
            UserWarning,
            stacklevel=3,
        )


class PairingEpoch(TrainerCallback):
    """Keeps the pairing dataset's epoch equal to the Trainer's, also after resuming inside an epoch.

    The Trainer forwards ``set_epoch`` to the data loader, but after a resume mid-epoch the loader that skips the
    trained batches does not reach the dataset, so retain rows of epoch 0 were drawn again (a resumed run then
    differed from the uninterrupted one). ``state.epoch`` is restored from the checkpoint before this event fires.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        dataset = self.trainer.train_dataset
        if isinstance(dataset, ForgetRetainDataset):
            dataset.set_epoch(int(state.epoch + 1e-6))


class InputsMixin:
    """Tokenising, the objectives' columns, TRL's data hooks, and retain NLLs for objectives' events."""

    def _tokenizer_of(self, processing_class: Any) -> Any:
        return processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class

    @staticmethod
    def _tokenize(rows: Sequence[Mapping[str, Any]], tokenizer: Any, args: Any, name: str) -> Any:
        from datasets import Dataset

        encoded = tokenize_rows(rows, tokenizer, max_length=args.max_length, system_prompt=args.system_prompt)
        if not encoded:
            raise ValueError(f"No {name} row has an answer token left after tokenisation; raise max_length.")
        return Dataset.from_list(encoded)

    def _prepare_forget(self, rows: Sequence[Mapping[str, Any]], forget: Any) -> Any:
        """Add every objective's columns, then the precomputed reference log-probs, to the forget table."""
        ctx = PrepareContext(
            rows=rows,
            forget=forget,
            tokenizer=self._tokenizer,
            model=self.model,
            args=self.args,
            device=self.accelerator.device,
            reference=Reference(self, self.model),
            _batches=self._table_batches,
        )
        for objective in self.objectives:
            was_training = self.model.training
            self.model.eval()  # objectives that precompute (e.g. a teacher's top-k) see the model without dropout
            try:
                columns = objective.prepare(ctx)
            finally:
                self.model.train(was_training)
            for column, values in columns.items():
                if column in forget.column_names:
                    raise ValueError(f"{objective.describe()} adds the column {column!r}, which already exists.")
                if len(values) != len(forget):
                    raise ValueError(
                        f"{objective.describe()}.prepare returned {len(values)} values for {column!r}; expected one "
                        f"per tokenised forget row ({len(forget)})."
                    )
                forget = forget.add_column(column, values)
            ctx.forget = forget
        if self.args.precompute_ref_log_probs:
            forget = self._precompute_reference(forget)
        return forget

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        """TRL's data hook: hf_unlearn tokenises before TRL sees the data, so the forget table passes unchanged."""
        if dataset_name != "train":
            raise ValueError("hf_unlearn trainers take no eval_dataset; evaluate with hf_unlearn.evaluation instead.")
        return dataset

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """TRL's precompute hook: reference columns are added by :meth:`_precompute_reference` after set-up."""
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            sample = self.train_dataset[0] if self.train_dataset is not None and len(self.train_dataset) else {}
            self._signature_columns = list(sample)

    @torch.no_grad()
    def retain_nll(self, indices: Sequence[int]) -> float:
        """Token-mean NLL of the current model on the retain rows ``indices`` (eval mode, no gradient)."""
        table = self.retain_dataset.select(list(indices))
        was_training = self.model.training
        self.model.eval()
        nll = tokens = 0.0
        try:
            for batch in self._table_batches(table, self.args.per_device_train_batch_size):
                out = self.sequence_logps(self.model, {f"retain_{k}": v for k, v in batch.items()}, ["retain"])
                nll -= float(out["retain"].logps.sum())
                tokens += float(out["retain"].num_tokens.sum())
        finally:
            self.model.train(was_training)
        return nll / max(tokens, 1.0)

    def paired_retain_nll(self, epoch: int) -> float:
        """Retain NLL of the current model on the retain rows paired with the forget set in ``epoch`` (every rank
        computes it, so what depends on it stays identical across ranks)."""
        pairs = self.train_dataset
        return self.retain_nll(sorted({j for i in range(len(pairs)) for j in pairs.retain_indices(i, epoch)}))

    def _input_tables(self, forget_rows, retain_dataset, tokenizer, args, req):
        """``(forget_rows, retain_rows, forget, retain)``: the rows with documents split into blocks (objectives see
        the blocks too) and their tokenised tables (retain only when an objective reads it)."""
        # Documents longer than max_length become blocks (never a silent cut); objectives see the blocks too.
        chunking = {"max_length": args.max_length, "stride": args.document_stride, "mode": args.document_chunking}
        blocks = {"forget": chunk_documents(forget_rows, tokenizer, **chunking)}
        forget_rows = blocks["forget"].rows
        retain_rows = as_rows(retain_dataset)
        if retain_rows is not None:
            blocks["retain"] = chunk_documents(retain_rows, tokenizer, **chunking)
            retain_rows = blocks["retain"].rows
        self.data_summary = {name: b.summary() for name, b in blocks.items()}
        for name, b in blocks.items():
            if b.split:
                logger.info(b.describe(name))
        forget_input, retain_input = forget_rows, retain_rows if req.retain else None
        if args.forget_target is not None:  # the reasoning format; objectives still see the source rows
            check_reasoning_template(tokenizer, system_prompt=args.system_prompt)
            forget_input = reasoning_rows(forget_rows, target=args.forget_target)
            retain_input = reasoning_rows(retain_input, target="both") if retain_input is not None else None
        forget = self._tokenize(forget_input, tokenizer, args, "forget")
        retain = self._tokenize(retain_input, tokenizer, args, "retain") if retain_input is not None else None
        if retain is not None:
            warn_overlap(forget, retain)
        return forget_rows, retain_rows, forget, retain
