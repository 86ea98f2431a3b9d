"""The streaming safetensors writer writes the file ``save_file`` writes."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model_merger import safetensors_stream
from model_merger.safetensors_stream import SAFETENSORS_DTYPES, SafetensorsWriter


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {
        f"w.{str(dtype).removeprefix('torch.')}": (torch.randn(3, 5, generator=gen) * 9).to(dtype)
        for dtype in SAFETENSORS_DTYPES
    }
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 4)
    out["transposed"] = torch.randn(4, 6, generator=gen).t()  # not contiguous
    out["naïve.名前"] = torch.ones(2, dtype=torch.bfloat16)
    return out


def test_bytes_equal_save_file_in_any_write_order(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file({
        k: v.contiguous() for k, v in tensors.items()
    },
              tmp_path / "lib.safetensors",
              metadata={"format": "pt"})
    specs = {name: (t.shape, t.dtype) for name, t in tensors.items()}
    with SafetensorsWriter(tmp_path / "ours.safetensors", specs, {"format": "pt"}) as writer:
        for name in reversed(sorted(tensors)):
            writer.write(name, tensors[name])
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path /
                                                            "lib.safetensors").read_bytes()
    with safe_open(tmp_path / "ours.safetensors", "pt") as handle:
        for name, tensor in tensors.items():
            assert torch.equal(handle.get_tensor(name), tensor), name


def test_refuses_holes_mismatches_and_repeats(tmp_path: Path) -> None:
    specs = {"a": (torch.Size([2]), torch.float32), "b": (torch.Size([3]), torch.float16)}
    with (pytest.raises(ValueError, match=r"never written, e\.g\. b"),
          SafetensorsWriter(tmp_path / "x.safetensors", specs) as writer):
        writer.write("a", torch.ones(2))
    writer = SafetensorsWriter(tmp_path / "y.safetensors", specs)
    with pytest.raises(ValueError, match=r"tensor b is \(3,\) torch.float32, declared"):
        writer.write("b", torch.ones(3))
    with pytest.raises(KeyError, match="c was not declared"):
        writer.write("c", torch.ones(1))
    writer.write("a", torch.ones(2))
    with pytest.raises(ValueError, match="a written twice"):
        writer.write("a", torch.ones(2))
    with pytest.raises(ValueError, match="has no safetensors name"):
        SafetensorsWriter(tmp_path / "z.safetensors", {"c": (torch.Size([1]), torch.complex64)})


@pytest.mark.parametrize("how", ["kernel", "buffer", "observed"])
def test_copy_from_byte_ranges_of_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              how: str) -> None:
    if how == "buffer":  # a kernel or filesystem without copy_file_range: through a buffer
        monkeypatch.setattr(os, "copy_file_range", _no_copy_file_range, raising=False)
    monkeypatch.setattr(safetensors_stream, "_CHUNK", 1000)  # several chunks per piece
    monkeypatch.setattr(safetensors_stream, "_OBSERVED_CHUNK", 1000)
    seen: dict[int, list[tuple[int, bytes]]] = {}

    def observe(fd: int, offset: int, data: memoryview) -> None:
        seen.setdefault(fd, []).append((offset, bytes(data)))

    big = torch.arange(3000, dtype=torch.float32).reshape(600, 5)
    parts = [big[:250], big[250:]]
    sources = []
    for i, part in enumerate(parts):
        path = tmp_path / f"rank{i}.bin"
        path.write_bytes(b"header" + part.numpy().tobytes() + b"tail")
        sources.append(os.open(path, os.O_RDONLY))
    pieces = [(fd, 6, part.numel() * 4) for fd, part in zip(sources, parts, strict=True)]
    small = torch.ones(3, dtype=torch.bfloat16)
    specs = {"big": (big.shape, big.dtype), "small": (small.shape, small.dtype)}
    with SafetensorsWriter(tmp_path / "ours.safetensors", specs) as writer:
        with pytest.raises(ValueError, match="12000 bytes, the pieces given add up to 6000"):
            writer.copy_from("big", [*pieces[:1], (sources[1], 6, 1000)])
        writer.copy_from("big", pieces, observe if how == "observed" else None)
        writer.write("small", small)
    for fd in sources:
        os.close(fd)
    if how == "observed":  # every byte shown once, in order, with its offset in its file
        for fd, part in zip(sources, parts, strict=True):
            assert len(seen[fd]) == -(-part.numel() * 4 // 1000) and seen[fd][0][0] == 6
            assert all(o + len(d) == n for (o, d), (n, _) in itertools.pairwise(seen[fd]))
            assert b"".join(d for _, d in seen[fd]) == part.numpy().tobytes()
    save_file({"big": big, "small": small}, tmp_path / "lib.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path /
                                                            "lib.safetensors").read_bytes()


def _no_copy_file_range(*args: object) -> int:
    raise OSError(errno.EXDEV, "Invalid cross-device link")
