"""``model-merger``: inspect sharded checkpoints and merge them into Hugging Face models.

Results (the tables, a dry run's listing, the uploaded commit's URL) go to stdout; progress (the
merge's bar, the upload's notices) goes to stderr and follows ``--quiet``/``--log-level``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from model_merger.formats import CheckpointError, detect_checkpoint
from model_merger.merge import MergeConfig, merge
from model_merger.upload import (
    UploadError,
    UploadTarget,
    check_model_dir,
    check_upload,
    print_dry_run,
    upload,
)
from trainyard_core.cli import (
    CommandError,
    add_config_arguments,
    config_from_args,
    main_guard,
    parse_args,
)
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-merger",
                                     description="Checkpoints to Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect",
                                  help="recognise a checkpoint directory and check it is complete",
                                  description="Detect the layout of LOCAL_DIR (verl FSDP rank "
                                  "files, torch DCP, or a peft LoRA adapter) and check that every "
                                  "file a merge needs is there.")
    inspect.add_argument("local_dir", type=Path, help="checkpoint directory")
    merge_parser = commands.add_parser(
        "merge",
        help="merge a sharded checkpoint or a LoRA adapter into a Hugging Face model directory",
        description="Join verl's per-rank FSDP files or a torch DCP directory, or fold a peft "
        "LoRA adapter into its base model, into safetensors shards plus the config and "
        "tokenizer files, written to a temporary "
        "directory beside TARGET_DIR and renamed into place only when complete. With "
        "--hf-upload-path, TARGET_DIR is then uploaded to the Hub (token: HF_TOKEN); the upload "
        "settings are checked before merging.")
    add_config_arguments(merge_parser, MergeConfig)
    upload_parser = commands.add_parser(
        "upload",
        help="upload a merged model directory to the Hugging Face Hub",
        description="Create the Hub model repo USER/REPO if missing and upload every file of "
        "DIR (a directory with config.json and *.safetensors, as merge writes) in one commit. "
        "The token comes from HF_TOKEN; HF_ENDPOINT picks another Hub.")
    upload_parser.add_argument("model_dir", type=Path, metavar="DIR", help="model directory")
    upload_parser.add_argument("--hf-upload-path",
                               "--hf_upload_path",
                               required=True,
                               metavar="USER/REPO",
                               help="Hub model repo to upload to (created if missing)")
    upload_parser.add_argument("--private",
                               action="store_true",
                               help="create the repo as private (an existing repo keeps its "
                               "visibility)")
    upload_parser.add_argument("--dry-run",
                               "--dry_run",
                               action="store_true",
                               help="list what would be uploaded and where; contact nothing "
                               "(no HF_TOKEN needed)")
    return parser


def _upload_target(cfg: MergeConfig) -> UploadTarget | None:
    """The checked upload destination of a merge, or None; raises before anything is merged."""
    if cfg.hf_upload_path is None:
        if cfg.private or cfg.dry_run:
            raise ConfigError("--private and --dry-run apply to the Hub upload: pass "
                              "--hf-upload-path user/repo with them")
        return None
    return check_upload(cfg.hf_upload_path, private=cfg.private, dry_run=cfg.dry_run)


def _publish(folder: Path, target: UploadTarget, commit_message: str) -> None:
    if target.token is None:
        print_dry_run(folder, target)
        return
    log.info("uploading %s to %s ...", folder, target.url)
    print(f"uploaded: {upload(folder, target, commit_message)}")  # the result: the commit


def _merge(args: argparse.Namespace) -> int:
    cfg = config_from_args(MergeConfig, args)
    target = _upload_target(cfg)
    try:
        result = merge(cfg)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    print_table(f"{result.target}", [{
        "format": result.format,
        "tensors": result.tensors,
        "MiB": result.total_bytes / 2**20,
        "files": len(result.files),
        "verified": "yes" if result.verified else "no",
    }])
    if target is not None:
        _publish(result.target, target,
                 f"Upload model merged by model-merger from a {result.format} checkpoint")
    return 0


def _upload(args: argparse.Namespace) -> int:
    folder = check_model_dir(args.model_dir)
    target = check_upload(args.hf_upload_path, private=args.private, dry_run=args.dry_run)
    _publish(folder, target, "Upload model with model-merger")
    return 0


def _run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return command(args)
    except UploadError as exc:
        # Not bad input (exit 2) but a failed transfer: one line on stderr, exit status 1.
        raise CommandError(str(exc)) from exc


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``model-merger`` command."""
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command == "merge":
        return _run(_merge, args)
    if args.command == "upload":
        if args.overrides:  # upload takes no config, so key=value words are mistakes
            parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
        return _run(_upload, args)
    try:
        info = detect_checkpoint(args.local_dir)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    size = sum(f.stat().st_size for f in info.files)
    print_table(f"{info.path}", [{
        "format": info.format,
        "world_size": info.world_size,
        "files": len(info.files),
        "MiB": size / 2**20,
        "hf_config": str(info.hf_config_dir or "-"),
    }])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
