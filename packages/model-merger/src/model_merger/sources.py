"""Readers of sharded checkpoints that hand out one merged tensor at a time.

A source first gives its ``plan`` (every tensor's full shape and dtype, from metadata alone),
then ``load``s the tensors the writer asks for. Neither reader maps whole files into memory:
pages of a mapped file count towards the process's resident set until it is unmapped, so a
merge that mapped its inputs would peak at the checkpoint's size. Rank files are unpickled onto
the ``meta`` device, which records each storage's byte offset in the file without reading it,
and every piece is then read with ``pread`` straight into its place in the output tensor.
Reading by offset bypasses the zip reader and with it the CRC-32 each entry carries, so every
byte read is also fed to a ``ZipCrcCheck``, and ``check`` compares the CRCs once all are read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from model_merger.formats import CheckpointError, CheckpointInfo
from model_merger.zipcrc import ZipCrcCheck, ZipCrcError

__all__ = ["DcpSource", "FsdpSource", "Plan", "Source"]

Plan = dict[str, tuple[torch.Size, torch.dtype]]
_log = logging.getLogger(__name__)


class Source(Protocol):
    """Where merged tensors come from."""

    def plan(self) -> Plan:
        """Every tensor's full shape and stored dtype, read from metadata only."""
        ...

    def load(self, names: list[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The named tensors, whole, cast to ``dtype`` when given."""
        ...

    def byte_ranges(self,
                    name: str,
                    dtype: torch.dtype | None = None) -> list[tuple[int, int, int]] | None:
        """``(fd, offset, length)`` ranges whose bytes, end to end, are the merged tensor as
        stored in ``dtype``; None where the tensor must be loaded instead."""
        ...

    def observe(self, fd: int, offset: int, data: memoryview) -> None:
        """Bytes of a range from ``byte_ranges``, as they are copied (for the checksums)."""
        ...

    def check(self) -> None:
        """Raise ``CheckpointError`` if the bytes read disagree with the checkpoint's own
        checksums (where its format has them); call once every tensor has been read."""
        ...


@contextmanager
def _quiet_device_mesh() -> Iterator[None]:
    # Unpickling a DTensor without a process group logs a warning about torch.compile.
    logger = logging.getLogger("torch.distributed.device_mesh")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _shard_sizes(length: int, world: int) -> list[int]:
    """The piece of a dimension each rank holds (``torch.chunk`` semantics, as FSDP shards)."""
    chunk = math.ceil(length / world) if length else 0
    return [max(0, min(chunk, length - rank * chunk)) for rank in range(world)]


def _read_exact(fd: int, file: Path, offset: int, out: torch.Tensor, crc: ZipCrcCheck) -> None:
    view = out.reshape(-1).view(torch.uint8).numpy().data
    while view:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            raise CheckpointError(f"{file}: truncated: ends before byte {offset + len(view)}")
        crc.feed(offset, view[:got])
        view, offset = view[got:], offset + got


class FsdpSource:
    """verl's per-rank ``model_world_size_{W}_rank_{r}.pt`` files."""

    def __init__(self, info: CheckpointInfo) -> None:
        self.files = info.files
        self.world = info.world_size
        self._check_fsdp_config(info.path)
        self.states: list[dict[str, Any]] = []
        for file in self.files:
            try:
                with _quiet_device_mesh():
                    state = torch.load(file, map_location="meta", weights_only=False)
            except Exception as exc:
                raise CheckpointError(f"{file}: cannot be read, truncated or corrupt "
                                      f"({type(exc).__name__}: {exc})") from exc
            if not isinstance(state, dict):
                raise CheckpointError(f"{file}: holds a {type(state).__name__}, "
                                      "not a model state dict")
            self.states.append(state)
        names = list(self.states[0])
        for file, state in zip(self.files[1:], self.states[1:], strict=True):
            if set(state) != set(names):
                diff = sorted(set(state) ^ set(names))[:3]
                raise CheckpointError(f"{file}: holds different tensor names than "
                                      f"{self.files[0].name} (e.g. {', '.join(diff)})")
        self._fds = [os.open(file, os.O_RDONLY) for file in self.files]
        self._sizes = [os.fstat(fd).st_size for fd in self._fds]
        self._rank_of_fd = {fd: rank for rank, fd in enumerate(self._fds)}
        self._crcs = []
        for file, fd in zip(self.files, self._fds, strict=True):
            try:
                self._crcs.append(ZipCrcCheck(file, fd))
            except ZipCrcError as exc:
                raise CheckpointError(str(exc)) from exc
            if not self._crcs[-1].recorded:
                _log.warning(
                    "%s: saved without CRC-32s (torch.serialization."
                    "set_crc32_options(False)); its bytes cannot be checked", file)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", []):
            os.close(fd)

    def _check_fsdp_config(self, path: Path) -> None:
        config = path / "fsdp_config.json"
        if not config.is_file():
            return
        try:
            world = json.loads(config.read_text())["world_size"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{config}: unreadable ({exc})") from exc
        if world != self.world:
            raise CheckpointError(f"{config}: world_size {world} but the rank files are for "
                                  f"world size {self.world}")

    def _pieces(self, name: str) -> list[Any]:
        return [state[name] for state in self.states]

    def _span(self, rank: int, name: str, local: torch.Tensor) -> tuple[int, int]:
        """Byte offset and length in rank ``rank``'s file of ``local``'s storage span."""
        storage = local.untyped_storage()
        start = getattr(storage, "_checkpoint_offset", None)
        if start is None:
            raise CheckpointError(f"{self.files[rank]}: tensor {name} has no storage record")
        if local.is_contiguous():
            offset = start + local.storage_offset() * local.element_size()
            length = local.numel() * local.element_size()
        else:
            offset, length = start, storage.nbytes()
        if offset + length > self._sizes[rank]:
            raise CheckpointError(f"{self.files[rank]}: truncated: {self._sizes[rank]} bytes, "
                                  f"but tensor {name} is stored up to byte {offset + length}")
        return offset, length

    def observe(self, fd: int, offset: int, data: memoryview) -> None:
        self._crcs[self._rank_of_fd[fd]].feed(offset, data)

    def check(self) -> None:
        """Every zip entry of every rank file against its CRC-32 (unread bytes read now)."""
        for crc in self._crcs:
            try:
                crc.check()
            except ZipCrcError as exc:
                raise CheckpointError(str(exc)) from exc

    def _read(self, rank: int, name: str, local: torch.Tensor) -> torch.Tensor:
        offset, length = self._span(rank, name, local)
        if local.is_contiguous():
            out = torch.empty(local.shape, dtype=local.dtype)
            if length:
                _read_exact(self._fds[rank], self.files[rank], offset, out, self._crcs[rank])
            return out
        raw = torch.empty(length, dtype=torch.uint8)
        _read_exact(self._fds[rank], self.files[rank], offset, raw, self._crcs[rank])
        return raw.view(local.dtype).as_strided(local.shape, local.stride(), local.storage_offset())

    def plan(self) -> Plan:
        from torch.distributed.tensor import DTensor, Replicate, Shard

        plan: Plan = {}
        for name in self.states[0]:
            pieces = self._pieces(name)
            if not all(isinstance(p, torch.Tensor) for p in pieces):
                continue  # non-tensor extras (e.g. _extra_state) are not model weights
            if all(isinstance(p, DTensor) for p in pieces):
                first = pieces[0]
                if first.device_mesh.ndim != 1 or first.device_mesh.size() != self.world:
                    raise CheckpointError(f"{self.files[0]}: tensor {name} is laid out on a "
                                          f"{tuple(first.device_mesh.shape)} mesh; only a 1-D "
                                          f"mesh of the {self.world} ranks is supported")
                placement = first.placements[0]
                for file, piece in zip(self.files, pieces, strict=True):
                    if piece.shape != first.shape or piece.placements != first.placements:
                        raise CheckpointError(f"{file}: tensor {name} is {tuple(piece.shape)} "
                                              f"{piece.placements} but rank 0 has it as "
                                              f"{tuple(first.shape)} {first.placements}")
                if isinstance(placement, Shard):
                    dim = placement.dim
                    expected = _shard_sizes(first.shape[dim], self.world)
                    for file, piece, size in zip(self.files, pieces, expected, strict=True):
                        local = piece.to_local().shape
                        want = (*first.shape[:dim], size, *first.shape[dim + 1:])
                        if tuple(local) != tuple(want):
                            raise CheckpointError(
                                f"{file}: shard of tensor {name} is {tuple(local)}, but the "
                                f"shards of a {tuple(first.shape)} tensor split on dim {dim} "
                                f"over {self.world} ranks must be {tuple(want)} here: they do "
                                "not tile its shape")
                elif not isinstance(placement, Replicate):
                    raise CheckpointError(f"{self.files[0]}: tensor {name} has placement "
                                          f"{placement}, which cannot be merged")
                locals_ = [p.to_local() for p in pieces]
            elif any(isinstance(p, DTensor) for p in pieces):
                raise CheckpointError(f"{self.files[0]}: tensor {name} is a DTensor on some "
                                      "ranks and a plain tensor on others")
            else:
                first = pieces[0]
                for file, piece in zip(self.files, pieces, strict=True):
                    if piece.shape != first.shape or piece.dtype != first.dtype:
                        raise CheckpointError(
                            f"{file}: plain tensor {name} is {tuple(piece.shape)} {piece.dtype} "
                            f"but {tuple(first.shape)} {first.dtype} on rank 0; plain tensors "
                            "must be replicated (the same on every rank)")
                locals_ = pieces
            for rank, local in enumerate(locals_):
                offset, length = self._span(rank, name, local)
                try:
                    self._crcs[rank].entry_at(offset, length)
                except ZipCrcError as exc:
                    raise CheckpointError(f"{exc} (tensor {name})") from exc
            plan[name] = (first.shape, first.dtype)
        return plan

    def byte_ranges(self,
                    name: str,
                    dtype: torch.dtype | None = None) -> list[tuple[int, int, int]] | None:
        """Pieces split on dim 0 (FSDP's layout) joined are the tensor's bytes: no need to
        read them into memory. Plain tensors are loaded, to check every rank has the same."""
        from torch.distributed.tensor import DTensor, Replicate, Shard

        first = self._pieces(name)[0]
        if not isinstance(first, DTensor) or dtype not in (None, first.dtype):
            return None
        placement = first.placements[0]
        if isinstance(placement, Replicate):
            ranks = [0]
        elif isinstance(placement, Shard) and placement.dim == 0:
            ranks = list(range(self.world))
        else:
            return None
        ranges = []
        for rank in ranks:
            local = self._pieces(name)[rank].to_local()
            if not local.is_contiguous():
                return None
            offset, length = self._span(rank, name, local)
            if length:
                ranges.append((self._fds[rank], offset, length))
        return ranges

    def load(self, names: list[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        from torch.distributed.tensor import DTensor, Shard

        out: dict[str, torch.Tensor] = {}
        for name in names:
            pieces = self._pieces(name)
            first = pieces[0]
            placement = first.placements[0] if isinstance(first, DTensor) else None
            if isinstance(placement, Shard):
                merged = torch.empty(first.shape, dtype=dtype or first.dtype)
                start = 0
                for rank, piece in enumerate(pieces):
                    local = piece.to_local()
                    size = local.shape[placement.dim]
                    if size:  # each piece is read, copied into place and dropped
                        merged.narrow(placement.dim, start,
                                      size).copy_(self._read(rank, name, local))
                    start += size
                out[name] = merged
            elif placement is not None:  # replicated: one copy, not W joined (verl#7610)
                out[name] = self._read(0, name, first.to_local()).to(dtype or first.dtype)
            else:
                tensor = self._read(0, name, first)
                for rank in range(1, self.world):
                    if not torch.equal(self._read(rank, name, pieces[rank]), tensor):
                        raise CheckpointError(f"{self.files[rank]}: plain tensor {name} differs "
                                              "from rank 0's copy; plain tensors must be "
                                              "replicated")
                out[name] = tensor.to(dtype or tensor.dtype)
        return out


class DcpSource:
    """A ``torch.distributed.checkpoint`` directory, read without a process group."""

    def __init__(self, info: CheckpointInfo) -> None:
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path = info.path
        metadata_file = self.path / ".metadata"
        try:
            metadata = FileSystemReader(str(self.path)).read_metadata()
        except Exception as exc:
            raise CheckpointError(f"{metadata_file}: cannot be read, truncated or corrupt "
                                  f"({type(exc).__name__}: {exc})") from exc
        needed: dict[str, int] = {}
        for item in (metadata.storage_data or {}).values():
            end = int(item.offset) + int(item.length)
            needed[item.relative_path] = max(needed.get(item.relative_path, 0), end)
        for relative, end in sorted(needed.items()):
            file = self.path / relative
            if not file.is_file():
                raise CheckpointError(f"{file}: missing (named in {metadata_file.name})")
            size = file.stat().st_size
            if size < end:
                raise CheckpointError(f"{file}: truncated: {size} bytes, but {metadata_file.name}"
                                      f" places data up to byte {end}")
        self._plan: Plan = {}
        for name, meta in metadata.state_dict_metadata.items():
            if not isinstance(meta, TensorStorageMetadata):
                continue  # bytes entries are not weights
            shape = meta.size
            covered = 0
            for chunk in meta.chunks:
                inside = all(o >= 0 and o + s <= d
                             for o, s, d in zip(chunk.offsets, chunk.sizes, shape, strict=True))
                if not inside:
                    raise CheckpointError(f"{metadata_file}: a chunk of tensor {name} at "
                                          f"{tuple(chunk.offsets)} size {tuple(chunk.sizes)} "
                                          f"lies outside its shape {tuple(shape)}")
                covered += math.prod(chunk.sizes)
            if covered != math.prod(shape):
                raise CheckpointError(f"{metadata_file}: the chunks of tensor {name} cover "
                                      f"{covered} of its {math.prod(shape)} elements: they do "
                                      f"not tile its shape {tuple(shape)}")
            self._plan[name] = (shape, meta.properties.dtype)

    def plan(self) -> Plan:
        return dict(self._plan)

    def byte_ranges(self,
                    name: str,
                    dtype: torch.dtype | None = None) -> list[tuple[int, int, int]] | None:
        return None  # each chunk is stored serialised, not as raw bytes

    def observe(self, fd: int, offset: int, data: memoryview) -> None:
        raise AssertionError("DcpSource gives no byte ranges")

    def check(self) -> None:
        pass  # .distcp files carry no checksums; corrupt pickled chunks fail to load

    def load(self, names: list[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        # DCP copies each stored chunk into these tensors, casting to their dtype.
        state: dict[str, Any] = {
            n: torch.empty(self._plan[n][0], dtype=dtype or self._plan[n][1]) for n in names
        }
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load(state, storage_reader=FileSystemReader(str(self.path)), no_dist=True)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: reading the *.distcp files failed, one is "
                                  f"corrupt ({type(exc).__name__}: {exc})") from exc
        return state
