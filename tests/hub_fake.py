"""A recording fake of the Hugging Face Hub client, for tests that publish or download through the entry points a user
calls (the recipe, ``trainer.push_to_hub()``, ``hf-unlearn push``, ``load_unlearned``).

Every repository-creating, uploading, committing or downloading call of ``huggingface_hub`` is recorded with its
arguments, whether it is reached through an ``HfApi`` instance (transformers' ``hf_api()``, hf_unlearn's own client)
or through a module-level function (``huggingface_hub.create_repo`` ...). Uploads land in one local folder per
repository, with the repository's visibility as it was *created* (like the Hub, a later ``create_repo(private=True,
exist_ok=True)`` does not change it). Any other HTTP request that ``huggingface_hub`` would make fails the test
with the URL it tried, so nothing reaches the network unrecorded.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from unittest import mock

WRITE_METHODS = (
    "create_repo",
    "upload_folder",
    "upload_file",
    "upload_large_folder",
    "create_commit",
    "create_branch",
    "create_tag",
    "update_repo_settings",
    "update_repo_visibility",
    "delete_repo",
    "delete_file",
    "delete_folder",
)
READ_METHODS = ("snapshot_download", "hf_hub_download", "list_repo_files", "file_exists", "repo_exists")


class UnrecordedHubCall(AssertionError):
    """A request to the Hub that the fake does not model."""


class RecordingHub:
    """See the module docstring. ``calls`` is a list of ``(name, arguments)``; ``remote(repo)`` the repo's files."""

    def __init__(self, root: Path, *, user: str = "me") -> None:
        self.root, self.user = Path(root), user
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.private: dict[str, bool] = {}  # repo -> visibility at creation
        self.fail_on: str | None = None  # the name of a call to fail (after recording it), e.g. "upload_folder"
        self._cache = Path(tempfile.mkdtemp(prefix="fake_hub_cache_"))

    # ------------------------------------------------------------------------------------------------ helpers

    def full_id(self, repo_id: str) -> str:
        return repo_id if "/" in repo_id else f"{self.user}/{repo_id}"

    def remote(self, repo_id: str) -> Path:
        return self.root / self.full_id(repo_id)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def uploaded(self, repo_id: str) -> list[str]:
        """Every path in the repository, relative and sorted."""
        base = self.remote(repo_id)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()) if base.is_dir() else []

    def texts(self) -> dict[str, str]:
        """Every uploaded file of every repository, decoded leniently: where to look for leaked text."""
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes().decode("utf-8", errors="ignore")
            for p in self.root.rglob("*")
            if p.is_file()
        }

    def _record(self, name: str, **arguments: Any) -> None:
        self.calls.append((name, arguments))
        if self.fail_on == name:
            raise OSError(f"fake Hub: {name} failed (connection reset)")

    def _require_repo(self, repo_id: str) -> str:
        full = self.full_id(repo_id)
        if full not in self.private:
            raise _not_found(full)
        return full

    # ------------------------------------------------------------------------------------------------ writes

    def create_repo(self, repo_id: str, *, token=None, private=None, repo_type=None, exist_ok=False, **kw):
        from huggingface_hub import RepoUrl

        self._record("create_repo", repo_id=repo_id, private=private, exist_ok=exist_ok, repo_type=repo_type, **kw)
        full = self.full_id(repo_id)
        if full in self.private and not exist_ok:
            raise OSError(f"fake Hub: {full} already exists")
        # An account's default visibility is public: `private=None` creates a public repository.
        self.private.setdefault(full, bool(private))
        return RepoUrl(f"https://huggingface.co/{full}")

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path,
        path_in_repo: str | None = None,
        allow_patterns=None,
        ignore_patterns=None,
        run_as_future: bool = False,
        commit_message: str | None = None,
        **kw,
    ):
        from huggingface_hub.utils import filter_repo_objects
        from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

        self._record(
            "upload_folder",
            repo_id=repo_id,
            folder_path=str(folder_path),
            path_in_repo=path_in_repo,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            commit_message=commit_message,
            **kw,
        )
        full = self._require_repo(repo_id)
        folder = Path(folder_path)
        rel = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        kept = list(
            filter_repo_objects(rel, allow_patterns=allow_patterns, ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS)
        )
        prefix = (path_in_repo or "").strip("/")
        for name in kept:
            target = self.root / full / prefix / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((folder / name).read_bytes())
        self.calls[-1][1]["uploaded"] = [f"{prefix}/{n}" if prefix else n for n in kept]
        return self._done(full, run_as_future)

    def upload_file(self, *, path_or_fileobj, path_in_repo: str, repo_id: str, run_as_future=False, **kw):
        self._record("upload_file", repo_id=repo_id, path_in_repo=path_in_repo, **kw)
        full = self._require_repo(repo_id)
        target = self.root / full / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_read(path_or_fileobj))
        return self._done(full, run_as_future)

    def create_commit(self, repo_id: str, operations, *, commit_message: str = "", run_as_future=False, **kw):
        from huggingface_hub import CommitOperationAdd

        paths = [getattr(op, "path_in_repo", None) for op in operations]
        self._record("create_commit", repo_id=repo_id, operations=paths, commit_message=commit_message, **kw)
        full = self._require_repo(repo_id)
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                target = self.root / full / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_read(op.path_or_fileobj))
        return self._done(full, run_as_future)

    def _done(self, full: str, run_as_future: bool):
        from huggingface_hub import CommitInfo

        info = CommitInfo(
            commit_url=f"https://huggingface.co/{full}/commit/0", commit_message="", commit_description="", oid="0"
        )
        if not run_as_future:
            return info
        future: Future = Future()
        future.set_result(info)
        return future

    def _other_write(self, name: str):
        def call(*args, **kw):
            self._record(name, args=args, **kw)
            raise UnrecordedHubCall(f"fake Hub: {name} is not expected from hf_unlearn ({args}, {kw})")

        return call

    # ------------------------------------------------------------------------------------------------ reads

    def snapshot_download(self, repo_id: str, *, allow_patterns=None, ignore_patterns=None, revision=None, **kw) -> str:
        from huggingface_hub.utils import filter_repo_objects

        self._record("snapshot_download", repo_id=repo_id, allow_patterns=allow_patterns, revision=revision, **kw)
        full = self._require_repo(repo_id)
        base = self.root / full
        rel = [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()]
        kept = list(filter_repo_objects(rel, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        out = self._cache / full.replace("/", "--") / f"snapshot-{len(self.calls)}"
        for name in kept:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / name, out / name)
        out.mkdir(parents=True, exist_ok=True)
        return str(out)

    def hf_hub_download(self, repo_id: str, filename: str, *, subfolder=None, revision=None, **kw) -> str:
        from huggingface_hub.errors import EntryNotFoundError

        name = f"{subfolder}/{filename}" if subfolder else filename
        self._record("hf_hub_download", repo_id=repo_id, filename=name, revision=revision)
        full = self._require_repo(repo_id)
        path = self.root / full / name
        if not path.is_file():
            raise EntryNotFoundError(f"fake Hub: {name} is not in {full}")
        return str(path)

    def list_repo_files(self, repo_id: str, **kw) -> list[str]:
        self._record("list_repo_files", repo_id=repo_id, **kw)
        self._require_repo(repo_id)
        return self.uploaded(repo_id)

    def file_exists(self, repo_id: str, filename: str, **kw) -> bool:
        self._record("file_exists", repo_id=repo_id, filename=filename)
        return (self.remote(repo_id) / filename).is_file()

    def repo_exists(self, repo_id: str, **kw) -> bool:
        self._record("repo_exists", repo_id=repo_id)
        return self.full_id(repo_id) in self.private

    # ------------------------------------------------------------------------------------------------ install

    @contextlib.contextmanager
    def installed(self, *, token: str | None = "hf_fake_token"):
        """Route every ``huggingface_hub`` entry point to this fake; ``token`` is what ``get_token()`` returns."""
        import httpx2
        import huggingface_hub
        from huggingface_hub import HfApi, hf_api
        from huggingface_hub.utils import _http

        def refuse(request):
            raise UnrecordedHubCall(f"unrecorded Hub request: {request.method} {request.url}")

        handlers = {
            name: getattr(self, name, None) or self._other_write(name) for name in (*WRITE_METHODS, *READ_METHODS)
        }
        with contextlib.ExitStack() as stack:
            for name, fn in handlers.items():
                # HfApi methods take `self` first; a staticmethod-like wrapper drops it.
                stack.enter_context(mock.patch.object(HfApi, name, _unbound(fn), create=True))
                for module in (huggingface_hub, hf_api):
                    if hasattr(module, name):
                        stack.enter_context(mock.patch.object(module, name, fn))
            for module in (
                "huggingface_hub",
                "huggingface_hub.utils",
                "huggingface_hub._login",
                "huggingface_hub.hf_api",
            ):
                with contextlib.suppress(ImportError, AttributeError):
                    stack.enter_context(mock.patch(f"{module}.get_token", return_value=token))
            _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(refuse)))
            stack.callback(_http.set_client_factory, _http.default_client_factory)
            yield self


def _unbound(fn):
    def method(_self, *args, **kw):
        return fn(*args, **kw)

    return method


def _read(source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, io.IOBase):
        return source.read()
    return Path(source).read_bytes()


def _not_found(repo_id: str):
    import httpx2
    from huggingface_hub.errors import RepositoryNotFoundError

    url = f"https://huggingface.co/api/models/{repo_id}"
    response = httpx2.Response(404, request=httpx2.Request("GET", url))
    return RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: {url}.", response=response)


def allowed(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)
