"""``driving-vla``: look inside DrivingVLA checkpoints."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from driving_vla.configuration_driving_vla import DrivingVLAConfig
from trainyard_core.cli import main_guard, one_line_errors
from trainyard_core.config import ConfigError
from trainyard_core.table import print_table

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
    args = one_line_errors(build_parser()).parse_args(argv)
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
    from driving_vla.export import export_onnx, export_torchscript
    from driving_vla.modeling_driving_vla import DrivingVLA

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a DrivingVLA checkpoint: no config.json")
    model = DrivingVLA.from_pretrained(path)
    written = (export_onnx if fmt == "onnx" else export_torchscript)(model, output)
    print(f"{fmt}: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
