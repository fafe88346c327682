"""An ONNX file's metadata_props, read from its bytes without building a session or importing onnx.

Why: `Sampler.load` checks every graph file of an export against the manifest (model
facts, the checkpoint it was traced from) before sampling, including the graphs whose
sessions are only built on first use. Building a session to read a few strings costs
~0.2 s for the unrolled loop graph; walking the protobuf's top-level fields costs
microseconds, since the graph itself (field 7) is skipped by its length prefix.

Protobuf wire format (protobuf.dev/programming-guides/encoding): each field is a varint
key (field number << 3 | wire type) then a varint, 8 bytes, 4 bytes or a
length-prefixed payload. ModelProto.metadata_props is field 14, a repeated
StringStringEntryProto {key = 1, value = 2}.
"""

from __future__ import annotations

_METADATA_PROPS = 14
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class NotOnnx(ValueError):
    """The bytes are not a well-formed protobuf message."""


def metadata(model: bytes) -> dict[str, str]:
    """{key: value} of the model's metadata_props (last wins, as protobuf's own parser does)."""
    props: dict[str, str] = {}
    view = memoryview(model)
    for number, payload in _fields(view):
        if number == _METADATA_PROPS and isinstance(payload, memoryview):
            entry = {n: bytes(p).decode("utf-8", "replace") for n, p in _fields(payload) if isinstance(p, memoryview)}
            props[entry.get(1, "")] = entry.get(2, "")
    return props


def _fields(view: memoryview):
    """(field number, payload) for each field of one message: an int, or a memoryview for LEN."""
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(view, pos)
            yield number, value
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
            if pos > end:
                raise NotOnnx("truncated fixed-width field")
        elif wire == _LEN:
            size, pos = _varint(view, pos)
            if pos + size > end:
                raise NotOnnx("truncated length-delimited field")
            yield number, view[pos:pos + size]
            pos += size
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise NotOnnx(f"unexpected wire type {wire}")


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise NotOnnx("truncated or overlong varint")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
