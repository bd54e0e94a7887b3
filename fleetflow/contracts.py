"""Avro single-object encoding for every FleetFlow topic.

Wire format (Avro spec, "Single-object encoding"): ``C3 01`` marker, the writer
schema's CRC-64-AVRO fingerprint as 8 little-endian bytes, then the binary body.
Readers look the fingerprint up among every schema version they know (current
``avro/<name>.avsc`` plus ``avro/history/<name>.v*.avsc``) and resolve the writer's
schema against the current one, so producers and consumers can upgrade separately.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

AVRO_DIR = Path(__file__).resolve().parent.parent / "avro"
MARKER = b"\xc3\x01"
HEADER_LEN = 10


class ContractError(ValueError):
    """A record could not be encoded or decoded. ``reason`` is a dead-letter reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class _Version:
    name: str
    parsed: Any
    fingerprint: bytes


def _fingerprint(parsed: Any) -> bytes:
    # fastavro's hex digest already lists the bytes in the spec's little-endian order.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _load(path: Path, name: str) -> _Version:
    # named_schemas is fresh per file: each version must stand on its own.
    parsed = parse_schema(json.loads(path.read_text()), named_schemas={})
    return _Version(name, parsed, _fingerprint(parsed))


@lru_cache(maxsize=None)
def _registry() -> tuple[dict[str, _Version], dict[bytes, _Version]]:
    current: dict[str, _Version] = {}
    by_fp: dict[bytes, _Version] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        v = _load(path, path.stem)
        current[v.name] = v
        by_fp[v.fingerprint] = v
    history = AVRO_DIR / "history"
    if history.is_dir():
        for path in sorted(history.glob("*.avsc")):
            name = path.name.split(".v")[0]
            v = _load(path, name)
            by_fp.setdefault(v.fingerprint, v)
    return current, by_fp


def schema_names() -> list[str]:
    return sorted(_registry()[0])


def current_fingerprint(name: str) -> bytes:
    return _current(name).fingerprint


def _current(name: str) -> _Version:
    try:
        return _registry()[0][name]
    except KeyError:
        raise ContractError("UNKNOWN_SCHEMA", f"no schema named {name!r} in {AVRO_DIR}") from None


def encode(name: str, record: dict[str, Any], *, writer_schema: Any = None) -> bytes:
    """Encode ``record`` with the current schema ``name`` (or an explicit older writer schema)."""
    v = _current(name) if writer_schema is None else _Version(name, writer_schema, _fingerprint(writer_schema))
    buf = io.BytesIO()
    buf.write(MARKER)
    buf.write(v.fingerprint)
    try:
        fastavro.schemaless_writer(buf, v.parsed, record, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ContractError("ENCODE_FAILED", f"{name}: {exc}") from exc
    return buf.getvalue()


def decode(data: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
    """Decode single-object bytes into ``(schema_name, record)`` in the current reader schema."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContractError("UNDECODABLE", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_LEN or data[:2] != MARKER:
        raise ContractError("UNDECODABLE", "missing Avro single-object marker C3 01")
    writer = _registry()[1].get(data[2:HEADER_LEN])
    if writer is None:
        raise ContractError("UNKNOWN_FINGERPRINT", f"unknown writer schema fingerprint {data[2:HEADER_LEN].hex()}")
    if expected is not None and writer.name != expected:
        raise ContractError("WRONG_SCHEMA", f"expected {expected}, got {writer.name}")
    reader = _current(writer.name)
    stream = io.BytesIO(data[HEADER_LEN:])
    try:
        record = fastavro.schemaless_reader(stream, writer.parsed, reader.parsed)
    except Exception as exc:  # fastavro raises a zoo of types on corrupt bodies
        raise ContractError("UNDECODABLE", f"{writer.name}: {type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(data) - HEADER_LEN:
        raise ContractError("UNDECODABLE", f"{writer.name}: {len(data) - HEADER_LEN - stream.tell()} trailing bytes")
    return writer.name, record
