"""TFRecord files and ``tf.train.Example`` / ``SequenceExample`` protos without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes)
    | data | uint32 masked_crc32c(data)

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)`` over CRC-32C
(Castagnoli). The data is a serialized protobuf; the few messages used here are decoded from the
protobuf wire format directly::

    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }        // map entry: key = 1, value = 2
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                              Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

Example:
    >>> masked_crc32c(b"")
    2726488792
    >>> parse_example(encode_example({"a": [1, 2], "b": [b"x"]}))["a"].tolist()
    [1, 2]
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.atomic import atomic_file

_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # reversed Castagnoli polynomial
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c_python(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data`` in pure Python (about 9 MB/s; the fallback).

    >>> hex(crc32c_python(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_backend() -> str:
    """Which CRC-32C :func:`crc32c` uses: ``"google-crc32c"``, ``"crc32c"`` or ``"python"``."""
    return _crc32c_impl()[0]


@functools.lru_cache(maxsize=1)
def _crc32c_impl() -> tuple[str, Callable[[bytes], int]]:
    # google-crc32c (a declared dependency; hardware CRC instructions, GB/s) or the crc32c
    # package; the pure-Python table loop when neither is installed.
    try:
        import google_crc32c

        return "google-crc32c", google_crc32c.value
    except ImportError:
        pass
    try:
        import crc32c as crc32c_pkg

        return "crc32c", crc32c_pkg.crc32c
    except ImportError:
        return "python", crc32c_python


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, from a C library when one is installed.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    return _crc32c_impl()[1](bytes(data) if isinstance(data, memoryview) else data)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_tfrecord(path: str | Path, verify_crc: bool = True) -> Iterator[bytes]:
    """Yield the records of a TFRecord file (uncompressed), checking the framing CRCs."""
    path = Path(path)
    with open(path, "rb") as f:
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{path}: record {index} is truncated (header of {len(header)} "
                                 "bytes); the file is incomplete or not a TFRecord")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if verify_crc and masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path}: record {index} has a corrupt length (CRC mismatch); "
                                 "the file is not an uncompressed TFRecord (GZIP files must be "
                                 "decompressed first)")
            remaining = os.fstat(f.fileno()).st_size - f.tell()
            if length > remaining:  # random bytes read as a length (checked even without CRCs)
                raise ValueError(f"{path}: record {index} claims {length} bytes but only "
                                 f"{remaining} remain; the file is truncated or not a TFRecord")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(f"{path}: record {index} is truncated; the file is incomplete")
            if verify_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: record {index} fails its data CRC; the file is corrupt")
            yield data
            index += 1


def write_tfrecord(path: str | Path, records: Any) -> None:
    """Write ``records`` (bytes) as a TFRecord file with correct masked CRCs."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))


# ---- protobuf wire format -------------------------------------------------------------------


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes in protobuf message")


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` of one message.

    Values: int for varints, bytes-like for length-delimited fields, raw 4/8 bytes for fixed ones.
    """
    buf = memoryview(buf)
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {field})")
        if pos > len(buf):
            raise ValueError(f"truncated protobuf field {field}")
        yield field, wire, value


def _decode_varints(buf: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _read_varint(buf, pos)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)  # int64 two's complement
    return out


def parse_feature(buf: bytes | memoryview) -> list[bytes] | np.ndarray:
    """Decode a ``Feature``: list of bytes, float32 array or int64 array."""
    for field, _, value in iter_fields(buf):
        if field == 1:  # BytesList
            return [bytes(v) for f, _, v in iter_fields(value) if f == 1]
        if field == 2:  # FloatList, packed (wire 2) or not (wire 5)
            chunks = [np.frombuffer(v, "<f4") for f, _, v in iter_fields(value) if f == 1]
            return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if field == 3:  # Int64List, packed or not
            vals: list[int] = []
            for f, w, v in iter_fields(value):
                if f == 1:
                    vals += _decode_varints(v) if w == 2 else [v - (1 << 64) if v >= 1 << 63 else v]
            return np.asarray(vals, dtype=np.int64)
    return np.zeros(0, np.float32)  # an empty Feature


def _parse_map(buf: memoryview, parse_value) -> dict[str, Any]:
    out = {}
    for field, _, entry in iter_fields(buf):
        if field != 1:
            continue
        key, value = "", b""
        for f, _, v in iter_fields(entry):
            if f == 1:
                key = bytes(v).decode("utf-8")
            elif f == 2:
                value = v
        out[key] = parse_value(value)
    return out


def parse_example(data: bytes) -> dict[str, Any]:
    """Decode a serialized ``tf.train.Example`` into ``{name: values}``."""
    features: dict[str, Any] = {}
    for field, _, value in iter_fields(data):
        if field == 1:
            features.update(_parse_map(value, parse_feature))
    return features


def parse_sequence_example(data: bytes) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Decode a ``tf.train.SequenceExample`` into (context features, feature lists)."""
    context: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    for field, _, value in iter_fields(data):
        if field == 1:
            context.update(_parse_map(value, parse_feature))
        elif field == 2:
            lists.update(_parse_map(value, lambda b: [parse_feature(v) for f, _, v in
                                                      iter_fields(b) if f == 1]))
    return context, lists


# ---- encoding (for writing test files and exporting) ----------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_feature(values: Any) -> bytes:
    """Encode bytes/str lists as BytesList, floats as FloatList, ints/bools as Int64List."""
    if isinstance(values, (bytes, str)):
        values = [values]
    if isinstance(values, list) and values and isinstance(values[0], (bytes, str)):
        items = b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _field(1, items)
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind == "f":
        return _field(2, _field(1, arr.astype("<f4").tobytes()))
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in arr)))


def _encode_features(features: Mapping[str, Any]) -> bytes:
    return b"".join(_field(1, _field(1, k.encode()) + _field(2, encode_feature(v)))
                    for k, v in features.items())


def encode_example(features: Mapping[str, Any]) -> bytes:
    """Serialize ``{name: values}`` as a ``tf.train.Example``."""
    return _field(1, _encode_features(features))


def encode_sequence_example(context: Mapping[str, Any],
                            feature_lists: Mapping[str, list[Any]]) -> bytes:
    """Serialize a ``tf.train.SequenceExample`` (context features + per-step feature lists)."""
    lists = b"".join(
        _field(1, _field(1, k.encode()) + _field(2, b"".join(_field(1, encode_feature(v))
                                                             for v in steps)))
        for k, steps in feature_lists.items())
    return _field(1, _encode_features(context)) + _field(2, lists)
