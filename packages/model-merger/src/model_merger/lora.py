"""A peft adapter merged into its base model's weights, one module at a time.

peft's own ``merge_and_unload`` needs the whole base model in memory. Here the model is built
on the ``meta`` device and wrapped by peft from the adapter's config, so peft decides which
modules carry an adapter and with which rank, alpha and scaling (``rank_pattern``, rsLoRA,
DoRA, ``fan_in_fan_out``). Then, for each wrapped module, only its base weights and adapter
weights are made real, peft's ``merge`` folds the adapter in, and the module goes back to
``meta``: the arithmetic is peft's, the memory is one module's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_merger.formats import CheckpointError, CheckpointInfo
from model_merger.modeling import build_model, model_class
from model_merger.sources import Plan

__all__ = ["LoraSource"]

_ADAPTER = "default"
_PREFIX = "base_model.model."
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def _resolve_base(adapter_dir: Path, adapter_config: dict[str, Any], base: str | None) -> Path:
    name = base or adapter_config.get("base_model_name_or_path")
    if not name:
        raise CheckpointError(f"{adapter_dir / 'adapter_config.json'}: names no "
                              "base_model_name_or_path; pass --base-model")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path / 'config.json'}: missing; --base-model must be a "
                                  "Hugging Face model directory")
        return path
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        raise CheckpointError(f"{name}: the adapter's base model is neither a directory nor a "
                              "Hub id (user/model); pass --base-model")
    from huggingface_hub import snapshot_download

    try:  # only what the merge reads: config, tokenizer and safetensors weights
        return Path(
            snapshot_download(name,
                              revision=adapter_config.get("revision"),
                              allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:
        raise CheckpointError(f"{name}: base model not found locally and not fetched from the "
                              f"Hub ({type(exc).__name__}: {exc}); pass --base-model DIR") from exc


def _weight_files(base_dir: Path) -> dict[str, Path]:
    """Which safetensors file of the base model holds each tensor."""
    from safetensors import safe_open

    index = base_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: unreadable ({exc})") from exc
        files = {name: base_dir / file for name, file in weight_map.items()}
        for file in sorted(set(files.values())):
            if not file.is_file():
                raise CheckpointError(f"{file}: missing (named in {index.name})")
        return files
    single = base_dir / "model.safetensors"
    if not single.is_file():
        raise CheckpointError(f"{base_dir}: no model.safetensors or model.safetensors.index.json "
                              "(the base model's weights must be safetensors)")
    try:
        with safe_open(single, "pt") as handle:
            return {name: single for name in handle.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as exc:
        raise CheckpointError(f"{single}: cannot be read ({type(exc).__name__}: {exc})") from exc


class LoraSource:
    """Base model tensors with the adapter merged in, under the base model's names."""

    def __init__(self, info: CheckpointInfo, base_model: str | None) -> None:
        import transformers
        from peft import PeftConfig, get_peft_model
        from safetensors.torch import load_file

        self.adapter_dir = info.path
        config_file = info.path / "adapter_config.json"
        try:
            adapter_config = json.loads(config_file.read_text())
            peft_config = PeftConfig.from_pretrained(str(info.path))
        except Exception as exc:
            raise CheckpointError(f"{config_file}: not a peft adapter config "
                                  f"({type(exc).__name__}: {exc})") from exc
        if peft_config.peft_type.value != "LORA":
            raise CheckpointError(f"{config_file}: peft_type {peft_config.peft_type.value}; "
                                  "only LoRA adapters are merged")
        self.base_dir = _resolve_base(info.path, adapter_config, base_model)
        self._files = _weight_files(self.base_dir)
        weights = info.files[1]
        try:
            if weights.suffix == ".safetensors":
                self._adapter = load_file(weights)
            else:
                self._adapter = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{weights}: cannot be read, truncated or corrupt "
                                  f"({type(exc).__name__}: {exc})") from exc
        config = transformers.AutoConfig.from_pretrained(self.base_dir)
        with torch.device("meta"):
            skeleton = build_model(model_class(getattr(config, "architectures", None)), config)
        self.model = get_peft_model(skeleton, peft_config, low_cpu_mem_usage=True)
        self._inner = self.model.base_model.model
        self._wrapped = self._wrapped_modules()
        if not self._wrapped:
            raise CheckpointError(f"{config_file}: its target_modules match no module of "
                                  f"{type(skeleton).__name__}")
        self._last: tuple[str, dict[str, torch.Tensor]] | None = None
        self._modules_to_save_keys = tuple(
            f"{_PREFIX}{name}." for name, module in self._wrapped.items()
            if type(module).__name__ == "ModulesToSaveWrapper")

    def _wrapped_modules(self) -> dict[str, Any]:
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import ModulesToSaveWrapper

        found: dict[str, Any] = {}
        for name, module in self._inner.named_modules():
            inside = any(name.startswith(f"{outer}.") for outer in found)
            if isinstance(module, BaseTunerLayer | ModulesToSaveWrapper) and not inside:
                found[name] = module
        return found

    def _owner(self, name: str) -> tuple[str, str] | None:
        """The wrapped module holding base tensor ``name``, and the tensor's path inside it."""
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self._wrapped:
                return prefix, ".".join(parts[cut:])
        return None

    def _base(self, names: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        out: dict[str, torch.Tensor] = {}
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self._files[name], []).append(name)
        for file, group in by_file.items():
            # Opened per batch: a mapped file's pages count as resident until it is closed.
            with safe_open(file, "pt") as handle:
                for name in group:
                    out[name] = handle.get_tensor(name)
        return out

    def plan(self) -> Plan:
        from safetensors import safe_open

        plan: Plan = {}
        by_file: dict[Path, list[str]] = {}
        for name, file in self._files.items():
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            try:
                with safe_open(file, "pt") as handle:
                    for name in names:
                        piece = handle.get_slice(name)
                        plan[name] = (torch.Size(piece.get_shape()),
                                      _SAFETENSORS_DTYPES[piece.get_dtype()])
            except (KeyError, OSError, RuntimeError) as exc:
                raise CheckpointError(f"{file}: cannot be read ({type(exc).__name__}: "
                                      f"{exc})") from exc
        consumed = {owner for name in plan if (owner := self._owner(name)) is not None}
        unused = sorted(set(self._wrapped) - {owner for owner, _ in consumed})
        if unused:
            raise CheckpointError(f"{self.adapter_dir}: the adapter changes module(s) "
                                  f"{', '.join(unused[:3])}, whose weights the base model's "
                                  f"checkpoint in {self.base_dir} does not name")
        return plan

    def _merge_module(self, prefix: str, module: Any,
                      base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Real weights into ``module``, peft's merge, the merged tensors out, back to meta."""
        from peft import set_peft_model_state_dict
        from peft.tuners.tuners_utils import BaseTunerLayer

        tuner = isinstance(module, BaseTunerLayer)
        inner: Any = module.get_base_layer() if tuner else module.original_module
        module.to_empty(device="cpu")
        for path, tensor in base.items():
            owner, _, attr = path.rpartition(".")
            target = inner.get_submodule(owner) if owner else inner
            setattr(target, attr, nn.Parameter(tensor, requires_grad=False))
            if not tuner:  # modules_to_save starts as the base
                copy = module.modules_to_save[_ADAPTER]
                dest = copy.get_submodule(owner) if owner else copy
                setattr(dest, attr, nn.Parameter(tensor.clone(), requires_grad=False))
        # peft's loader looks up every modules_to_save wrapper's keys, so they always go along;
        # copying into the other wrappers' meta parameters costs nothing.
        keys = (f"{_PREFIX}{prefix}.", *self._modules_to_save_keys)
        subset = {k: v for k, v in self._adapter.items() if k.startswith(keys)}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*to a meta parameter.*is a no-op")
                result: Any = set_peft_model_state_dict(self.model, subset, adapter_name=_ADAPTER)
        except RuntimeError as exc:  # shapes that disagree: not this adapter's base model
            detail = str(exc).splitlines()[-1].strip()
            raise CheckpointError(f"{self.adapter_dir}: does not fit module {prefix} of the base "
                                  f"model in {self.base_dir}: {detail}") from exc
        if result.unexpected_keys:
            raise CheckpointError(f"{self.adapter_dir}: adapter tensor(s) "
                                  f"{sorted(result.unexpected_keys)[:3]} do not fit module "
                                  f"{prefix} of the base model")
        if tuner:
            # As merge_and_unload does: the delta is added at its own precision and rounded
            # once (peft's safe_merge rounds it to the base dtype first).
            module.merge(adapter_names=[_ADAPTER])
            source: Any = inner
        else:
            source = module.modules_to_save[_ADAPTER]
        for path in base:
            if not torch.isfinite(source.get_parameter(path)).all():
                raise CheckpointError(f"{self.adapter_dir}: merging into {prefix} gives "
                                      f"non-finite values in {path}")
        merged = {path: source.get_parameter(path).detach().clone() for path in base}
        module.to_empty(device="meta")
        if tuner:
            module.merged_adapters.clear()  # its weights are gone: merge afresh next time
        return merged

    def byte_ranges(self,
                    name: str,
                    dtype: torch.dtype | None = None) -> list[tuple[int, int, int]] | None:
        return None  # merged weights are computed

    def observe(self, fd: int, offset: int, data: memoryview) -> None:
        raise AssertionError("LoraSource gives no byte ranges")

    def check(self) -> None:
        pass  # safetensors files carry no checksums; the merge refuses non-finite results

    def load(self, names: list[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        owners = {name: self._owner(name) for name in names}
        plain = self._base([name for name, owner in owners.items() if owner is None])
        out: dict[str, torch.Tensor] = {}
        for name, owner in owners.items():
            if owner is None:
                tensor = plain.pop(name)
            else:
                prefix, path = owner
                if self._last is None or self._last[0] != prefix:  # weight, then bias: one merge
                    module_names = [n for n in self._files if n.startswith(f"{prefix}.")]
                    base = {
                        n.removeprefix(f"{prefix}."): t
                        for n, t in self._base(module_names).items()
                    }
                    self._last = (prefix, self._merge_module(prefix, self._wrapped[prefix], base))
                tensor = self._last[1][path]
            out[name] = tensor.to(dtype) if dtype is not None else tensor
        return out
