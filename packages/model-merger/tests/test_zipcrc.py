"""``ZipCrcCheck`` checks each stored entry's CRC-32 from whatever byte ranges were fed."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import pytest

from model_merger.zipcrc import ZipCrcCheck, ZipCrcError, crc32_combine


@pytest.mark.parametrize("len1,len2", [(0, 0), (0, 9), (1, 1), (1000, 7), (5, 1 << 17)])
def test_crc32_combine_equals_crc_of_the_concatenation(len1: int, len2: int) -> None:
    first, second = os.urandom(len1), os.urandom(len2)
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len2) == zlib.crc32(first + second)


def _archive(path: Path, entries: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    """A stored (uncompressed) zip; each entry's data offset and size, found by search."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    raw = path.read_bytes()
    return {name: (raw.index(data), len(data)) for name, data in entries.items()}


def _entries() -> dict[str, bytes]:
    return {
        "ckpt/data.pkl": os.urandom(100),
        "ckpt/data/0": os.urandom(5000),
        "ckpt/data/1": os.urandom(3000),
        "ckpt/version": b"3\n"
    }


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def _feed(check: ZipCrcCheck, path: Path, ranges: list[tuple[int, int]]) -> None:
    raw = path.read_bytes()
    for offset, length in ranges:
        check.feed(offset, memoryview(raw[offset:offset + length]))


def test_fed_in_pieces_out_of_order_with_repeats_and_overlaps(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    where = _archive(path, _entries())
    start, _ = where["ckpt/data/0"]
    one, _ = where["ckpt/data/1"]
    fd = os.open(path, os.O_RDONLY)
    try:
        check = ZipCrcCheck(path, fd)
        assert check.recorded and check.entry_at(start + 10, 100) == "ckpt/data/0"
        # Out of order, continued runs, a repeat, an overlap, and gaps left for check to read.
        _feed(check, path, [(start + 2000, 1000), (start, 1000), (start + 1000, 500),
                            (start + 100, 50), (start + 2500, 2000), (one + 10, 2990)])
        check.check()
    finally:
        os.close(fd)


@pytest.mark.parametrize("fed", [True, False])
def test_a_flipped_bit_names_the_entry(tmp_path: Path, fed: bool) -> None:
    path = tmp_path / "a.zip"
    where = _archive(path, _entries())
    start, size = where["ckpt/data/1"]
    _flip(path, start + size // 2)
    fd = os.open(path, os.O_RDONLY)
    try:
        check = ZipCrcCheck(path, fd)
        if fed:  # the damaged bytes pass through feed, the rest is read by check
            _feed(check, path, [(start, size)])
        with pytest.raises(ZipCrcError, match=r"a\.zip: zip entry 'ckpt/data/1' is corrupt"):
            check.check()
    finally:
        os.close(fd)


def test_bytes_outside_any_entry_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    where = _archive(path, _entries())
    start, size = where["ckpt/data/0"]
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ZipCrcError, match="no single entry"):
            ZipCrcCheck(path, fd).entry_at(start + size - 4, 8)
    finally:
        os.close(fd)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    path.write_bytes(b"\0" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ZipCrcError, match=r"a\.pt: not a readable zip archive"):
            ZipCrcCheck(path, fd)
    finally:
        os.close(fd)
