"""``driving-vla``: look inside DrivingVLA checkpoints and export them.

Results (the architecture table, the exported file's path) go to stdout; progress goes through
``logging`` to stderr, so ``--quiet``/``--log-level`` (added by ``parse_args``) set how much
of it shows.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from driving_vla.configuration_driving_vla import DrivingVLAConfig
from trainyard_core.cli import main_guard, parse_args, progress_enabled
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table

log = logging.getLogger(__name__)

_FIELDS = ("num_cameras", "image_size", "action_dim", "trajectory_length", "hidden_size",
           "language_model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driving-vla", description="DrivingVLA checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect",
                                  help="print the architecture of a saved DrivingVLA",
                                  description="Read config.json from a DrivingVLA checkpoint "
                                  "directory and print its architecture.")
    inspect.add_argument("path", type=Path, help="checkpoint directory holding config.json")
    export = commands.add_parser("export",
                                 help="export a checkpoint to ONNX or TorchScript",
                                 description="Load a DrivingVLA checkpoint and write an ONNX or "
                                 "TorchScript file taking the observations, returning controls, "
                                 "waypoints and value.")
    export.add_argument("path", type=Path, help="checkpoint directory (save_pretrained)")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    export.add_argument("--output", type=Path, required=True, help="file to write")
    return parser


@main_guard
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driving-vla`` command."""
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.overrides:  # no command here takes a config, so key=value words are mistakes
        parser.error(f"unrecognized arguments: {' '.join(args.overrides)}")
    if args.command == "export":
        return _export(args.path, args.format, args.output)
    config_file = args.path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(args.path)!r} is not a DrivingVLA checkpoint: "
                                f"no config.json in it")
    try:
        config = DrivingVLAConfig.from_pretrained(args.path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{config_file}: {exc}") from exc
    print_table(f"DrivingVLA {args.path}", [{
        "setting": name,
        "value": getattr(config, name)
    } for name in _FIELDS])
    return 0


def _export(path: Path, fmt: str, output: Path) -> int:
    from transformers.utils import logging as hf_logging

    from driving_vla.export import export_onnx, export_torchscript
    from driving_vla.modeling_driving_vla import DrivingVLA

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a DrivingVLA checkpoint: no config.json")
    log.info("loading %s", path)
    # transformers draws its own "Loading weights" bar: it follows --quiet/--log-level too
    quiet = not progress_enabled() and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        model = DrivingVLA.from_pretrained(path)
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    log.info("exporting to %s (%s)", output, fmt)
    written = (export_onnx if fmt == "onnx" else export_torchscript)(model, output)
    print(f"{fmt}: {written}")  # the result: the file written
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
