"""Check the CRC-32 a zip archive stores for each entry, from the bytes a reader reads anyway.

``torch.save`` writes a zip archive whose entries are stored uncompressed, each with the CRC-32
of its bytes in the central directory. The merger reads tensor bytes straight from the file by
offset, not through ``zipfile``, so nothing would ever compare them with those CRCs: a flipped
bit in a rank file would go into the merged model unnoticed (and ``--verify``, comparing with
the same bytes, would agree). ``ZipCrcCheck`` is told about every byte range as it passes
(``feed``) and keeps a running CRC per contiguous run; ``check`` then joins each entry's runs
(``crc32_combine``), reads only the bytes nobody read (the pickle, padding, unused copies) and
compares with what the archive recorded. No byte the merge reads is read twice for the check.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import struct
import zipfile
import zlib
from pathlib import Path

__all__ = ["ZipCrcCheck", "ZipCrcError", "crc32_combine"]

_POLY = 0xEDB88320  # CRC-32 (zip's), reflected
_CHUNK = 16 * 2**20  # bytes read at a time where nobody read them yet
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length


class ZipCrcError(ValueError):
    """A zip archive whose structure or stored CRC-32 does not match its bytes."""


def _multmodp(a: int, b: int) -> int:
    """``a * b`` modulo the CRC polynomial (zlib's ``multmodp``)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()  # x^(2^k) modulo the polynomial


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``.

    Python's ``zlib`` does not expose zlib's ``crc32_combine``; this is its algorithm: shift
    ``crc1`` by ``len2`` zero bytes (multiply by x^(8 len2)), then add ``crc2``."""
    p, n, k = 1 << 31, len2, 3  # x^0; x^(8 n) = x^(n 2^3)
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


@dataclasses.dataclass
class _Entry:
    """One stored entry: where its bytes lie, the CRC recorded for them, and the runs seen."""

    name: str
    start: int
    size: int
    crc: int
    runs: list[list[int]] = dataclasses.field(default_factory=list)  # [start, end, crc]

    @property
    def end(self) -> int:
        return self.start + self.size


class ZipCrcCheck:
    """The entries of one zip file (``path``, open as ``fd``) and the CRC of what was read.

    ``recorded`` is False for an archive written without CRCs (``torch.serialization.
    set_crc32_options(False)`` stores 0 for every entry): there is nothing to check against."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._done = False
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ZipCrcError(f"{path}: not a readable zip archive ({exc})") from exc
        size = os.fstat(fd).st_size
        self._entries: list[_Entry] = []
        for info in infos:
            header = os.pread(fd, _LOCAL_HEADER.size, info.header_offset)
            if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise ZipCrcError(f"{path}: entry {info.filename!r}: no local header at byte "
                                  f"{info.header_offset}")
            _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
            start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            if info.compress_type != zipfile.ZIP_STORED:
                raise ZipCrcError(f"{path}: entry {info.filename!r} is compressed; torch.save "
                                  "stores entries uncompressed, which reading by offset needs")
            if start + info.file_size > size:
                raise ZipCrcError(f"{path}: truncated: entry {info.filename!r} ends at byte "
                                  f"{start + info.file_size}, the file has {size}")
            self._entries.append(_Entry(info.filename, start, info.file_size, info.CRC))
        self._entries.sort(key=lambda e: e.start)
        self._starts = [e.start for e in self._entries]
        self.recorded = any(e.crc for e in self._entries if e.size)

    def entry_at(self, offset: int, length: int) -> str:
        """The name of the entry holding bytes ``[offset, offset + length)``; raises if none."""
        return self._entry(offset, length).name

    def _entry(self, offset: int, length: int) -> _Entry:
        index = bisect.bisect_right(self._starts, offset) - 1
        if index < 0 or offset + length > self._entries[index].end:
            raise ZipCrcError(f"{self.path}: bytes {offset}..{offset + length} lie in no single "
                              "entry of the archive")
        return self._entries[index]

    def feed(self, offset: int, data: memoryview | bytes | bytearray) -> None:
        """Account for ``data``, read from ``offset`` of the file (one entry's bytes)."""
        if self._done or not self.recorded or not len(data):
            return
        end = offset + len(data)
        entry = self._entry(offset, len(data))
        for run in entry.runs:
            if run[0] <= offset and end <= run[1]:
                return  # read again (a tied weight, a re-load): its CRC is already in
        for run in entry.runs:
            if run[1] == offset:  # continues a run: the CRC goes on from where it stopped
                run[1], run[2] = end, zlib.crc32(data, run[2])
                return
        entry.runs.append([offset, end, zlib.crc32(data)])

    def check(self) -> None:
        """Compare every entry's CRC with the recorded one, reading bytes not fed yet.

        Raises ``ZipCrcError`` naming the file and the first entry that differs."""
        if self._done or not self.recorded:
            return
        buffer = bytearray(_CHUNK)
        for entry in self._entries:
            crc, at = 0, entry.start
            runs = sorted(entry.runs)
            while at < entry.end:
                here = [run for run in runs if run[0] == at]
                if here:  # the longest run that starts here
                    run = max(here, key=lambda r: r[1])
                    crc, at = crc32_combine(crc, run[2], run[1] - run[0]), run[1]
                    continue
                # Nobody read [at, next run): read it now (partial overlaps are read again).
                stop = min([run[0] for run in runs if run[0] > at] + [entry.end])
                while at < stop:
                    view = memoryview(buffer)[:min(stop - at, _CHUNK)]
                    got = os.preadv(self._fd, [view], at)
                    if got == 0:
                        raise ZipCrcError(f"{self.path}: truncated inside entry {entry.name!r}")
                    crc, at = zlib.crc32(view[:got], crc), at + got
            entry.runs.clear()
            if crc != entry.crc:
                raise ZipCrcError(f"{self.path}: zip entry {entry.name!r} is corrupt: the CRC-32 "
                                  f"of its {entry.size} bytes is {crc:08x}, the archive records "
                                  f"{entry.crc:08x}")
        self._done = True
