"""Reading NAS-Bench-101's ``.tfrecord`` without TensorFlow: the record framing and the metrics protobuf.

A TFRecord file is a sequence of records: an 8-byte little-endian length, a 4-byte masked CRC-32C of the length,
the data, a 4-byte masked CRC-32C of the data. Each NAS-Bench-101 record is a JSON list ``[module_hash, epochs,
adjacency ("0110..." row by row), operations ("input,conv3x3-bn-relu,...,output"), metrics]``, where ``metrics``
is a base64 ``ModelMetrics`` protobuf: ``evaluation_data`` (field 1, repeated ``EvaluationData``: ``current_epoch``
1, ``training_time`` 2, ``train_accuracy`` 3, ``validation_accuracy`` 4, ``test_accuracy`` 5, all doubles;
``checkpoint_path`` 6), ``trainable_parameters`` (2, int32), ``total_time`` (3, double).

:func:`write_tfrecord` and :func:`encode_model_metrics` write the same format (for tests and small samples).

Example:
    >>> import io
    >>> buf = io.BytesIO()
    >>> write_tfrecord(buf, [b"hello", b"world"])
    >>> _ = buf.seek(0)
    >>> list(read_tfrecord(buf, check_crc=True))
    [b'hello', b'world']
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from nni_pl.errors import StoreError

__all__ = [
    "NasBench101Record",
    "decode_model_metrics",
    "encode_model_metrics",
    "read_nasbench_records",
    "read_tfrecord",
    "write_tfrecord",
]

_CRC_TABLE: list[int] = []


def _crc32c(data: bytes) -> int:
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


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord(stream: IO[bytes], *, check_crc: bool = False) -> Iterator[bytes]:
    """The records of a TFRecord stream (uncompressed). ``check_crc`` verifies the checksums (slow in Python).

    Raises:
        StoreError: the stream ends inside a record, or a checksum does not match.
    """
    offset = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise StoreError(f"TFRecord truncated at byte {offset}: a record header needs 12 bytes")
        (length,) = struct.unpack("<Q", header[:8])
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) < length or len(footer) < 4:
            raise StoreError(f"TFRecord truncated at byte {offset}: the record says {length} bytes")
        if check_crc and (
            struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8])
            or struct.unpack("<I", footer)[0] != _masked_crc(data)
        ):
            raise StoreError(
                f"TFRecord checksum mismatch in the record at byte {offset}; the file is damaged"
            )
        offset += 16 + length
        yield data


def write_tfrecord(stream: IO[bytes], records: Iterable[bytes]) -> None:
    """Write ``records`` in the TFRecord format."""
    for data in records:
        header = struct.pack("<Q", len(data))
        stream.write(
            header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data))
        )


# ------------------------------------------------------------------------------------------- protobuf (proto2)
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a protobuf message (value: int, bytes or 8/4 raw bytes)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
        yield number, wire, value


_EVAL_FIELDS = {
    1: "current_epoch",
    2: "training_time",
    3: "train_accuracy",
    4: "validation_accuracy",
    5: "test_accuracy",
}


def decode_model_metrics(data: bytes) -> dict[str, Any]:
    """A ``ModelMetrics`` message as ``{"evaluation_data": [{...}], "trainable_parameters": int, "total_time": float}``."""
    out: dict[str, Any] = {"evaluation_data": [], "trainable_parameters": 0, "total_time": 0.0}
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            ev: dict[str, Any] = dict.fromkeys(_EVAL_FIELDS.values(), 0.0)
            for n, w, v in _fields(value):
                if n in _EVAL_FIELDS and w == 1:
                    ev[_EVAL_FIELDS[n]] = struct.unpack("<d", v)[0]
                elif n == 6 and w == 2:
                    ev["checkpoint_path"] = v.decode("utf-8")
            out["evaluation_data"].append(ev)
        elif number == 2 and wire == 0:
            out["trainable_parameters"] = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == 1:
            out["total_time"] = struct.unpack("<d", value)[0]
    return out


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_model_metrics(metrics: Mapping[str, Any]) -> bytes:
    """The inverse of :func:`decode_model_metrics`."""
    out = bytearray()
    for ev in metrics.get("evaluation_data", []):
        msg = bytearray()
        for n, name in _EVAL_FIELDS.items():
            if name in ev:
                msg += _key(n, 1) + struct.pack("<d", float(ev[name]))
        out += _key(1, 2) + _encode_varint(len(msg)) + msg
    if "trainable_parameters" in metrics:
        out += _key(2, 0) + _encode_varint(int(metrics["trainable_parameters"]) & ((1 << 64) - 1))
    if "total_time" in metrics:
        out += _key(3, 1) + struct.pack("<d", float(metrics["total_time"]))
    return bytes(out)


# ------------------------------------------------------------------------------------------- NAS-Bench-101 rows
class NasBench101Record:
    """One training run in NAS-Bench-101's file: the cell, the epoch budget and the evaluations."""

    __slots__ = ("adjacency", "epochs", "metrics", "module_hash", "operations")

    def __init__(
        self,
        module_hash: str,
        epochs: int,
        adjacency: list[list[int]],
        operations: list[str],
        metrics: dict[str, Any],
    ) -> None:
        self.module_hash, self.epochs, self.adjacency = module_hash, epochs, adjacency
        self.operations, self.metrics = operations, metrics

    def to_row(self) -> bytes:
        """This record as the file stores it."""
        flat = "".join(str(int(x)) for row in self.adjacency for x in row)
        metrics = base64.b64encode(encode_model_metrics(self.metrics)).decode("ascii")
        return json.dumps([self.module_hash, self.epochs, flat, ",".join(self.operations), metrics]).encode(
            "utf-8"
        )


def read_nasbench_records(stream: IO[bytes]) -> Iterator[NasBench101Record]:
    """The training runs of a NAS-Bench-101 ``.tfrecord`` stream.

    Raises:
        StoreError: a record is not NAS-Bench-101's (names the record and what is wrong).
    """
    for index, data in enumerate(read_tfrecord(stream)):
        try:
            module_hash, epochs, flat, ops, metrics = json.loads(data.decode("utf-8"))
            dim = math.isqrt(len(flat))
            if dim * dim != len(flat):
                raise ValueError(f"the adjacency string has {len(flat)} digits, not a square number")
            adjacency = [[int(flat[r * dim + c]) for c in range(dim)] for r in range(dim)]
            decoded = decode_model_metrics(base64.b64decode(metrics))
        except (ValueError, TypeError, UnicodeDecodeError, IndexError, struct.error) as e:
            raise StoreError(
                f"record {index} is not a NAS-Bench-101 row [hash, epochs, adjacency, operations, metrics]: {e}"
            ) from e
        yield NasBench101Record(str(module_hash), int(epochs), adjacency, ops.split(","), decoded)
