"""Hub upload: checked before merging, dry runs contact nothing, failures keep the model.

Nothing here talks to the real Hub: uploads go to a closed port on localhost, which is how an
unreachable Hub looks to huggingface_hub's real client.
"""

from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS
from safetensors.torch import save_file

from model_merger.cli import main
from model_merger.upload import list_upload

REPO = "alice/tiny-llama"
TOKEN = "hf_dummy_token_for_tests"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.fixture(autouse=True)
def hub_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every test at an unreachable Hub, online, with no token unless a test sets one."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, at import
    return endpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small torch.distributed.checkpoint directory with huggingface/ beside it."""
    path = tmp_path_factory.mktemp("ckpt") / "actor"
    generator = torch.Generator().manual_seed(0)
    state = {
        "model.embed_tokens.weight": torch.randn(32, 8, generator=generator),
        "model.norm.weight": torch.ones(8),
        "lm_head.weight": torch.randn(32, 8, generator=generator),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled": one process
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(path)), no_dist=True)
    hf = path / "huggingface"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 32}))
    (hf / "generation_config.json").write_text("{}\n")
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An already merged model directory, with files an upload must skip."""
    path = tmp_path / "merged"
    path.mkdir()
    save_file({"w": torch.zeros(4, 4)}, str(path / "model.safetensors"))
    (path / "config.json").write_text('{"model_type": "llama"}\n')
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (path / ".git").mkdir()
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / ".cache" / "huggingface").mkdir(parents=True)
    (path / ".cache" / "huggingface" / "upload.lock").write_text("")
    return path


def _merge(checkpoint: Path, target: Path, *extra: str) -> int:
    return main(["merge", "--local-dir", str(checkpoint), "--target-dir", str(target), *extra])


def _rows(out: str) -> dict[str, int]:
    """``{file: bytes}`` from the dry-run table (rich draws body rows between │ bars)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 2 and cells[0] != "file":
            rows[cells[0]] = int(cells[1].replace(",", ""))
    return rows


def _files(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
    }


def test_dry_run_lists_what_upload_folder_would_send(model_dir: Path) -> None:
    # The same selection as huggingface_hub's own (private) planner of upload_folder.
    planned = HfApi()._prepare_upload_folder_additions(model_dir,
                                                       path_in_repo="",
                                                       ignore_patterns=DEFAULT_IGNORE_PATTERNS)
    assert [name for name, _ in list_upload(model_dir)] == [op.path_in_repo for op in planned]
    assert dict(list_upload(model_dir)) == _files(model_dir)


def test_upload_dry_run_needs_no_token_and_contacts_nothing(
        model_dir: Path, hub_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", str(model_dir), "--hf-upload-path", REPO, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert _rows(out) == _files(model_dir)  # .git and .cache/huggingface left out
    assert f"{hub_env}/{REPO}" in out and "nothing uploaded" in out


def test_merge_dry_run_merges_then_lists_the_merged_files(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, "--hf_upload_path", REPO, "--dry-run", "--private") == 0
    out = capsys.readouterr().out
    assert {"config.json", "generation_config.json", "model.safetensors"} <= set(_files(target))
    assert _rows(out) == _files(target)
    assert REPO in out and "private" in out


@pytest.mark.parametrize("token", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_missing_token_fails_before_merging(checkpoint: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            token: str | None) -> None:
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)  # compose passes an unset one as ""
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, "--hf-upload-path", REPO) == 2
    err = capsys.readouterr().err
    assert "HF_TOKEN is not set" in err and REPO in err and "--dry-run" in err
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "repo",
    ["tiny-llama", "alice/", "/tiny", "alice/team/tiny", "alice/tiny--llama", "alice/tiny.git"])
def test_invalid_repo_id_fails_before_merging(checkpoint: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              repo: str) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, "--hf-upload-path", repo) == 2
    err = capsys.readouterr().err
    assert f"--hf-upload-path {repo!r}" in err and "user/repo" in err
    assert not target.exists()


def test_offline_mode_fails_before_merging(checkpoint: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, "--hf-upload-path", REPO) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.parametrize("flag", ["--private", "--dry-run"])
def test_upload_flags_without_a_repo_are_refused(checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 flag: str) -> None:
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, flag) == 2
    assert "--hf-upload-path" in capsys.readouterr().err
    assert not target.exists()


def test_unreachable_hub_keeps_the_merged_model(checkpoint: Path, tmp_path: Path, hub_env: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    target = tmp_path / "merged"
    assert _merge(checkpoint, target, "--hf-upload-path", REPO) == 1
    out, err = capsys.readouterr()
    assert "uploading" not in out  # progress and errors on stderr; stdout holds the table
    assert f"uploading {target} to {hub_env}/{REPO} ..." in err
    assert f"uploading {target} to {REPO} at {hub_env} failed" in err
    assert f"the merged model is kept at {target}" in err
    assert f"model-merger upload {target} --hf-upload-path {REPO}" in err
    assert TOKEN not in err
    assert {"config.json", "model.safetensors"} <= set(_files(target))


def test_upload_command_on_unreachable_hub(model_dir: Path, hub_env: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    before = _files(model_dir)
    assert main(["upload", str(model_dir), "--hf-upload-path", REPO, "--private"]) == 1
    err = capsys.readouterr().err
    assert REPO in err and hub_env in err and "ConnectError" in err
    assert f"--hf-upload-path {REPO} --private" in err  # the retry keeps --private
    assert _files(model_dir) == before


@pytest.mark.parametrize(("files", "missing"), [
    ((), "no config.json and no *.safetensors"),
    (("config.json",), "no *.safetensors"),
    (("model.safetensors",), "no config.json"),
])
def test_upload_refuses_a_directory_that_is_not_a_model(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        files: tuple[str,
                                                                     ...], missing: str) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for name in files:
        (tmp_path / name).write_text("{}")
    assert main(["upload", str(tmp_path), "--hf-upload-path", REPO]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: not a Hugging Face model directory, {missing} in it" in err


def test_upload_refuses_a_missing_directory(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["upload", str(missing), "--hf-upload-path", REPO, "--dry-run"]) == 2
    assert f"{missing}: not a directory" in capsys.readouterr().err


def test_merge_progress_is_on_stderr_and_quiet_drops_it(checkpoint: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _merge(checkpoint, tmp_path / "loud") == 0
    out, err = capsys.readouterr()
    assert "merging" in err and "merging" not in out  # the bar
    assert "tensors" in out  # the result table
    assert _merge(checkpoint, tmp_path / "quiet", "--quiet") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "tensors" in out
