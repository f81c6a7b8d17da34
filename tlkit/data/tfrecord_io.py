"""TFRecord framing in plain Python: read the records of a shard from any file object (an object store
through fsspec), where TensorFlow's ``TFRecordDataset`` cannot go (it reads no ``s3://``).

A TFRecord file is a sequence of ``uint64 length, uint32 masked crc32c(length), data, uint32 masked
crc32c(data)``. The reader checks the length's CRC (a file that is not TFRecord, or is cut, fails at
once, naming the file); the data CRC is not recomputed in Python (slow without a C crc32c): a
shard's SHA-256 in the prepared manifest is what ``tlkit check-data`` verifies. No TensorFlow here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from tlkit.errors import DataError

_CRC_TABLE: list[int] = []


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), table-driven; only used on the 8-byte length headers."""
    if not _CRC_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(f: BinaryIO, name: str = "") -> Iterator[bytes]:
    """Every record of the TFRecord file open as ``f``, in order; :class:`DataError` on a damaged frame."""
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise DataError(f"{name}: TFRecord cut short (a partial record header); prepare the data again")
        length, crc = struct.unpack("<QI", head)
        if masked_crc(head[:8]) != crc:
            raise DataError(f"{name}: not a TFRecord file or damaged (bad length checksum); prepare the data again")
        data = f.read(length)
        if len(data) < length or len(f.read(4)) < 4:
            raise DataError(f"{name}: TFRecord cut short (a partial record); prepare the data again")
        yield data
