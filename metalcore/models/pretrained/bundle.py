"""Read a TensorFlow checkpoint (a "tensor bundle") into NumPy arrays, without TensorFlow.

A bundle is two files: ``<prefix>.index``, a LevelDB-format table mapping each variable's name to a
``BundleEntryProto`` (dtype, shape, offset and size in the data file, masked CRC32C of the bytes),
and ``<prefix>.data-00000-of-00001``, the raw little-endian arrays back to back. Only what TF1
checkpoints of dense float tensors use is read: uncompressed blocks, one shard, no slices. Every
tensor's CRC32C is checked, so a damaged file is refused rather than turned into wrong weights.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's table footer magic number
_FOOTER = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}  # TF DataType


class BundleError(ValueError):
    """The files are not a tensor bundle this reader understands, or their bytes are damaged."""


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum LevelDB and TensorFlow use; pure Python, so slow on large files."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The CRC as TensorFlow stores it (rotated and offset, so a CRC of CRCs stays informative)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a serialised protobuf message: varints as int, the rest as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _block(table: bytes, handle: bytes) -> bytes:
    """The contents of the block a (offset, size) handle points at, its trailer checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    block, trailer = table[offset : offset + size], table[offset + size : offset + size + 5]
    if len(block) != size or len(trailer) != 5:
        raise BundleError("index block runs past the end of the file")
    if trailer[0] != 0:
        raise BundleError(f"compressed index block (type {trailer[0]}) is not supported")
    if struct.unpack("<I", trailer[1:])[0] != masked_crc32c(block + trailer[:1]):
        raise BundleError("index block checksum mismatch")
    return block


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a table block; keys are prefix-compressed against the previous one."""
    (restarts,) = struct.unpack("<I", block[-4:])
    end, pos, key = len(block) - 4 - 4 * restarts, 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        own, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + own]
        pos += own
        yield key, block[pos : pos + size]
        pos += size


def read_index(index: bytes) -> dict[str, dict]:
    """Variable name -> ``{"dtype", "shape", "offset", "size", "crc32c"}`` from a ``.index`` file's bytes."""
    if len(index) < _FOOTER or struct.unpack("<Q", index[-8:])[0] != _TABLE_MAGIC:
        raise BundleError("not a LevelDB table (bad footer magic)")
    footer = index[-_FOOTER:]
    _, pos = _varint(footer, 0)  # the metaindex handle: unused
    _, pos = _varint(footer, pos)
    index_handle = footer[pos:]
    entries = {}
    for _, data_handle in _entries(_block(index, index_handle)):
        for key, value in _entries(_block(index, data_handle)):
            if key:  # the empty key holds the BundleHeaderProto
                entries[key.decode()] = _entry(value)
    return entries


def _entry(proto: bytes) -> dict:
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "crc32c": None}
    for number, value in _fields(proto):
        if number == 1:
            entry["dtype"] = value
        elif number == 2:
            entry["shape"] = [next((v for n, v in _fields(dim) if n == 1), 0) for n, dim in _fields(value) if n == 2]
        elif number == 3:
            entry["shard"] = value
        elif number == 4:
            entry["offset"] = value
        elif number == 5:
            entry["size"] = value
        elif number == 6:
            entry["crc32c"] = struct.unpack("<I", value)[0]
        elif number == 7:
            raise BundleError("sliced (partitioned) variables are not supported")
    return entry


def read_bundle(index: bytes, data: bytes, wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The variables of a bundle (those ``wanted`` accepts; all by default) as NumPy arrays, from the bytes
    of its ``.index`` and its one data shard. Skipping what is not needed (optimiser slots) skips its checksum."""
    arrays = {}
    for name, entry in read_index(index).items():
        if wanted is not None and not wanted(name):
            continue
        if entry["dtype"] not in _DTYPES:
            raise BundleError(f"{name}: unsupported dtype {entry['dtype']}")
        if entry["shard"] != 0:
            raise BundleError(f"{name}: stored in shard {entry['shard']}; only one-shard bundles are supported")
        raw = data[entry["offset"] : entry["offset"] + entry["size"]]
        if len(raw) != entry["size"]:
            raise BundleError(f"{name}: runs past the end of the data file")
        if entry["crc32c"] is not None and masked_crc32c(raw) != entry["crc32c"]:
            raise BundleError(f"{name}: checksum mismatch (damaged data file)")
        array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<"))
        arrays[name] = array.reshape(entry["shape"]).copy()
    return arrays
