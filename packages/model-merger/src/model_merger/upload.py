"""Upload a merged model directory to a Hugging Face Hub model repo.

The upload settings are checked (``check_upload``) before a merge starts, so a misspelt repo id
or a missing token shows up at once, not after the merge has run. An upload that fails later
(network, permissions) leaves the merged directory where it is, and the error says so, so the
upload can be retried with ``model-merger upload`` without merging again.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

from huggingface_hub import constants, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import (
    DEFAULT_IGNORE_PATTERNS,
    HFValidationError,
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
    filter_repo_objects,
    validate_repo_id,
)

from trainyard_core.cli import progress_enabled
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table

__all__ = [
    "TOKEN_ENV", "UploadError", "UploadTarget", "check_model_dir", "check_upload", "list_upload",
    "print_dry_run", "upload"
]

TOKEN_ENV = "HF_TOKEN"


class UploadError(RuntimeError):
    """The Hub could not be reached or refused the upload; the model directory is untouched."""


@dataclasses.dataclass(frozen=True)
class UploadTarget:
    """A checked Hub destination: the repo, its visibility, the endpoint and the token."""

    repo_id: str
    private: bool
    endpoint: str
    token: str | None = dataclasses.field(default=None, repr=False)  # None: dry run

    @property
    def url(self) -> str:
        return f"{self.endpoint}/{self.repo_id}"


def _endpoint() -> str:
    # huggingface_hub reads HF_ENDPOINT once, at import; read it again so the value in force
    # when the upload runs is the one used (and named in errors).
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def check_upload(repo_id: str, *, private: bool = False, dry_run: bool = False) -> UploadTarget:
    """Check an upload destination and the token, without contacting the Hub.

    Raises ``ConfigError`` (exit status 2) naming the bad input and what was expected."""
    namespace, _, name = repo_id.partition("/")
    if not namespace or not name:
        raise ConfigError(f"--hf-upload-path {repo_id!r}: expected a Hub model repo as "
                          "user/repo (or org/repo), e.g. alice/qwen2.5-7b-grpo")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ConfigError(f"--hf-upload-path {repo_id!r}: not a valid Hub repo id ({exc}); "
                          "expected user/repo with letters, digits, '-', '_' or '.'") from exc
    endpoint = _endpoint()
    if dry_run:
        return UploadTarget(repo_id, private, endpoint)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"--hf-upload-path {repo_id}: {TOKEN_ENV} is not set; export a "
                          f"Hugging Face token with write access as {TOKEN_ENV} (or pass "
                          "--dry-run to list what would be uploaded)")
    if is_offline_mode():
        raise ConfigError(f"--hf-upload-path {repo_id}: HF_HUB_OFFLINE is set, so the Hub "
                          "cannot be reached; unset it to upload (or pass --dry-run)")
    return UploadTarget(repo_id, private, endpoint, token)


def check_model_dir(folder: str | Path) -> Path:
    """``folder`` if it looks like a Hugging Face model directory, else ``ConfigError``."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory (expected a merged model directory)")
    missing = [
        what for what, present in (("config.json", (path / "config.json").is_file()),
                                   ("*.safetensors", any(path.glob("*.safetensors"))))
        if not present
    ]
    if missing:
        raise ConfigError(f"{path}: not a Hugging Face model directory, no "
                          f"{' and no '.join(missing)} in it (expected the output of "
                          "model-merger merge)")
    return path


def list_upload(folder: str | Path) -> list[tuple[str, int]]:
    """``(path in repo, bytes)`` of every file ``upload_folder`` would send, in its order.

    Same selection as huggingface_hub: every file below ``folder``, minus ``.git`` and
    ``.cache/huggingface``."""
    root = Path(folder).expanduser().resolve()
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.glob("**/*")) if p.is_file()}
    keep = filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS)
    return [(name, files[name].stat().st_size) for name in keep]


def print_dry_run(folder: str | Path, target: UploadTarget) -> list[tuple[str, int]]:
    """Print the files an upload of ``folder`` would send and where to; contact nothing."""
    files = list_upload(folder)
    total = sum(size for _, size in files)
    visibility = "private" if target.private else "public"
    print_table(f"files to upload to {target.repo_id}", [{
        "file": name,
        "bytes": f"{size:,}"
    } for name, size in files])
    # The dry run's result, so stdout. One unwrapped line, so the whole destination can be read
    # (and grepped) in a log.
    print(f"dry run: would upload {len(files)} files ({total:,} bytes) from {folder} to "
          f"{target.url} (a new repo is {visibility}); nothing uploaded")
    return files


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())  # server messages span lines; errors print as one line
    response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
    if response is not None and response.status_code in (401, 403):
        text += f" (check that {TOKEN_ENV} is valid and may write to this repo)"
    return f"{type(exc).__name__}: {text}"


def upload(folder: str | Path, target: UploadTarget, commit_message: str) -> str:
    """Create ``target``'s repo if missing, upload ``folder`` to it; return the commit URL.

    Any failure becomes ``UploadError`` naming the repo and endpoint; ``folder`` is kept."""
    if target.token is None:
        raise ValueError(f"{target.repo_id}: checked for a dry run, has no token to upload with")
    from huggingface_hub import HfApi  # imported here: it adds 0.25 s to every merge's start

    api = HfApi(endpoint=target.endpoint, token=target.token, library_name="trainyard-model-merger")
    # huggingface_hub draws its own bars: they follow --quiet/--log-level like ours
    quiet = not progress_enabled() and not are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        api.create_repo(target.repo_id, private=target.private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=folder,
                                 repo_id=target.repo_id,
                                 repo_type="model",
                                 commit_message=commit_message)
    # huggingface_hub raises its HTTP errors, its HTTP client's transport errors, OSError and
    # ValueError (e.g. a bad README.md header): all mean the same to the caller.
    except Exception as exc:
        retry = f"model-merger upload {shlex.quote(str(folder))} --hf-upload-path {target.repo_id}"
        retry += " --private" if target.private else ""
        raise UploadError(f"uploading {folder} to {target.repo_id} at {target.endpoint} failed "
                          f"({_describe(exc)}); the merged model is kept at {folder}; retry "
                          f"with: {retry}") from exc
    finally:
        if quiet:
            enable_progress_bars()
    return str(info.commit_url)
