"""TFRecord files read without TensorFlow, every checksum verified.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``
(little endian). The masking and CRC-32C are TensorFlow's; ``google-crc32c`` computes the CRC.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c

__all__ = ["TFRecordError", "masked_crc32c", "read_records", "write_records"]

_MASK_DELTA = 0xA282EAD8


class TFRecordError(ValueError):
    """A TFRecord file that is truncated or whose checksums do not match."""


def masked_crc32c(data: bytes) -> int:
    """TensorFlow's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: Path) -> Iterator[bytes]:
    """Yield each record's payload; raise ``TFRecordError`` naming the file, record and offset."""
    path = Path(path)
    with path.open("rb") as handle:
        index = 0
        while True:
            offset = handle.tell()
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(f"{path}: record {index} at byte {offset}: truncated header")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: record {index} at byte {offset}: "
                                    "length checksum mismatch (corrupt file)")
            data = handle.read(length)
            footer = handle.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordError(f"{path}: record {index} at byte {offset}: truncated data "
                                    f"(expected {length} bytes)")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise TFRecordError(f"{path}: record {index} at byte {offset}: "
                                    "data checksum mismatch (corrupt file)")
            yield data
            index += 1


def write_records(path: Path, records: list[bytes]) -> None:
    """Write ``records`` in TFRecord framing (used to build test data and converted logs)."""
    with Path(path).open("wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length + struct.pack("<I", masked_crc32c(length)))
            handle.write(data + struct.pack("<I", masked_crc32c(data)))
