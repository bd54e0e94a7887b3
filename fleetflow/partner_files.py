"""Partner batch drops of scans (CSV or JSON Lines) turned into scan records and dead letters.

Every physical line is accounted for: it is the CSV header, blank, a valid scan, or a
dead letter carrying the line's original bytes, ``source_topic="file:<name>"`` and
the 1-based line number as ``source_offset``. A file is never half-read silently.

Partners often omit ``event_id``. It is then derived from a hash of the partner and the
*normalised* line content (trimmed fields, upper-case carrier, time in ms, coordinates
as numbers), so a re-sent file, or the same scan with different whitespace, CRLF line
ends or an ISO time instead of epoch ms, gets the same event_id and the dedup stage
turns the re-ingest into a no-op.

Format assumptions: UTF-8 (a leading BOM is tolerated), one record per line; a CSV
file's first line is its header. Quoted CSV fields spanning lines are not supported
and end up as BAD_FILE_LINE dead letters rather than being stitched together. Columns
other than the scan fields are ignored and do not affect a derived event_id.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from fleetflow.contracts import ContractError, encode
from fleetflow.ingest import NO_PARTITION, DeadLetter, make_dead_letter
from udfs.validation import DEFAULT_CONFIG, ValidationConfig, topic_id_problem, validate_scan

BAD_FILE_LINE = "BAD_FILE_LINE"
PARTNER_FILE_SOURCE = "PARTNER_FILE"
DERIVED_EVENT_ID_PREFIX = "pf_"
# 128 bits of sha256: collisions are out of reach for any volume of partner scans.
DERIVED_EVENT_ID_HEX_CHARS = 32

FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
REQUIRED_COLUMNS = frozenset({"tracking_id", "carrier", "raw_code"})
TIME_COLUMNS = ("event_time_ms", "event_time")
# leg is an Avro int; fastavro writes out-of-range ints without complaint, so the bound is checked here.
MAX_LEG = 2**31 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_BOM = "\ufeff"


class _BadLine(ValueError):
    pass


@dataclass(frozen=True)
class PartnerFileResult:
    records: tuple[dict[str, Any], ...]
    dead_letters: tuple[DeadLetter, ...]
    lines_read: int
    blank_lines: int = 0
    header_lines: int = 0

    @property
    def accounted_lines(self) -> int:
        return len(self.records) + len(self.dead_letters) + self.blank_lines + self.header_lines


@dataclass
class _Acc:
    records: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    lines: int = 0
    blank: int = 0
    header: int = 0


def detect_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    try:
        return FORMAT_BY_SUFFIX[suffix]
    except KeyError:
        raise ValueError(f"cannot tell the format of {name!r}; expected one of {sorted(FORMAT_BY_SUFFIX)}") from None


def parse_partner_file(path: str | Path, *, partner: str, now_ms: int, known_carriers: frozenset[str],
                       cfg: ValidationConfig = DEFAULT_CONFIG, fmt: str | None = None) -> PartnerFileResult:
    """Parse one partner drop. ``now_ms`` is processing time (validation reference and detected_time_ms)."""
    path = Path(path)
    with path.open("rb") as fh:
        return parse_partner_lines(fh, name=path.name, fmt=fmt or detect_format(path.name), partner=partner,
                                   now_ms=now_ms, known_carriers=known_carriers, cfg=cfg)


def parse_partner_lines(lines: BinaryIO | Iterable[bytes], *, name: str, fmt: str, partner: str, now_ms: int,
                        known_carriers: frozenset[str], cfg: ValidationConfig = DEFAULT_CONFIG) -> PartnerFileResult:
    """Parse an iterable of raw lines (a binary file object works) in ``fmt`` ``csv`` or ``jsonl``."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown partner file format {fmt!r}")
    source = f"file:{name}"
    acc = _Acc()
    header: list[str] | None = None
    header_problem: str | None = None

    def dead(reason: str, detail: str, original: bytes, line_no: int) -> None:
        acc.dead.append(make_dead_letter(reason, detail, original, source_topic=source,
                                         source_partition=NO_PARTITION, source_offset=line_no,
                                         detected_time_ms=now_ms))

    for line_no, raw_line in enumerate(lines, start=1):
        acc.lines += 1
        original = raw_line[:-1] if raw_line.endswith(b"\n") else raw_line
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError as exc:
            dead(BAD_FILE_LINE, f"not UTF-8: {exc}", original, line_no)
            continue
        if line_no == 1:
            text = text.removeprefix(_BOM)
        text = text.rstrip("\r")

        if fmt == "csv" and line_no == 1:
            header, header_problem = _parse_header(text)
            if header_problem is None:
                acc.header += 1
            else:
                dead(BAD_FILE_LINE, header_problem, original, line_no)
            continue
        if not text.strip():
            acc.blank += 1
            continue
        if header_problem is not None:
            dead(BAD_FILE_LINE, f"unusable CSV header: {header_problem}", original, line_no)
            continue

        try:
            fields = _csv_fields(text, header) if fmt == "csv" else _json_fields(text)
            record = _to_scan(fields, partner)
        except _BadLine as exc:
            dead(BAD_FILE_LINE, str(exc), original, line_no)
            continue
        reason = validate_scan(record, now_ms, cfg, known_carriers)
        if reason is not None:
            problem = topic_id_problem("scans", record)
            # An id problem names its field (and never quotes an over-long id whole).
            detail = (problem.detail if problem is not None
                      else f"{record['event_id']} {record['tracking_id']!r}")
            dead(reason, detail, original, line_no)
            continue
        try:
            # Catches anything parsing let through that the scans topic cannot carry.
            encode("scans", record)
        except ContractError as exc:
            dead(BAD_FILE_LINE, str(exc), original, line_no)
            continue
        acc.records.append(record)

    return PartnerFileResult(tuple(acc.records), tuple(acc.dead), acc.lines, acc.blank, acc.header)


def derive_event_id(partner: str, record: Mapping[str, Any]) -> str:
    """Deterministic event_id for a normalised scan record without one."""
    content = {k: v for k, v in record.items() if k not in ("event_id", "source")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    digest = hashlib.sha256(f"{partner}\n{canonical}".encode("utf-8")).hexdigest()
    return DERIVED_EVENT_ID_PREFIX + digest[:DERIVED_EVENT_ID_HEX_CHARS]


def _parse_header(text: str) -> tuple[list[str], str | None]:
    try:
        columns = [c.strip().lower() for c in next(csv.reader([text], strict=True))]
    except (csv.Error, StopIteration) as exc:
        return [], f"header is not CSV: {exc}"
    missing = sorted(REQUIRED_COLUMNS - set(columns))
    if missing:
        return columns, f"header lacks columns {missing}"
    if not any(c in columns for c in TIME_COLUMNS):
        return columns, f"header needs one of {list(TIME_COLUMNS)}"
    if len(set(columns)) != len(columns):
        return columns, "header repeats a column"
    return columns, None


def _csv_fields(text: str, header: list[str] | None) -> dict[str, Any]:
    assert header is not None
    try:
        values = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise _BadLine(f"bad CSV quoting: {exc}") from None
    if len(values) != len(header):
        raise _BadLine(f"{len(values)} fields, header has {len(header)}")
    return dict(zip(header, values))


def _json_fields(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _BadLine(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _BadLine(f"expected a JSON object, got {type(value).__name__}")
    return value


def _text(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _BadLine(f"{key}: expected text, got {type(value).__name__}")
    return str(value).strip()


def _optional_text(fields: Mapping[str, Any], key: str) -> str | None:
    return _text(fields, key) or None


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise _BadLine(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _BadLine(f"{key}: expected an integer, got {value!r}")


def _float(value: Any, key: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise _BadLine(f"{key}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _BadLine(f"{key}: expected a number, got {value!r}") from None


def _iso_to_ms(value: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise _BadLine(f"event_time: not ISO-8601: {value!r}") from None
    if dt.tzinfo is None:
        # A local time without an offset is ambiguous across partners' time zones.
        raise _BadLine(f"event_time: ISO-8601 needs a UTC offset or Z: {value!r}")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _event_time_ms(fields: Mapping[str, Any]) -> int:
    raw_ms = fields.get("event_time_ms")
    raw_iso = _text(fields, "event_time")
    has_ms = raw_ms is not None and not (isinstance(raw_ms, str) and not raw_ms.strip())
    from_ms = _int(raw_ms, "event_time_ms") if has_ms else None
    from_iso = _iso_to_ms(raw_iso) if raw_iso else None
    if from_ms is None and from_iso is None:
        raise _BadLine("no event_time_ms or event_time")
    if from_ms is not None and from_iso is not None and from_ms != from_iso:
        raise _BadLine(f"event_time_ms {from_ms} disagrees with event_time {raw_iso!r}")
    return from_ms if from_ms is not None else from_iso  # type: ignore[return-value]


def _to_scan(fields: Mapping[str, Any], partner: str) -> dict[str, Any]:
    raw_code = _text(fields, "raw_code")
    if not raw_code:
        raise _BadLine("raw_code is empty")
    lat = _float(fields.get("lat"), "lat")
    lon = _float(fields.get("lon"), "lon")
    if (lat is None) != (lon is None):
        raise _BadLine("lat and lon must both be set or both be empty")
    leg_raw = fields.get("leg")
    leg = 1 if leg_raw is None or (isinstance(leg_raw, str) and not leg_raw.strip()) else _int(leg_raw, "leg")
    if not 1 <= leg <= MAX_LEG:
        raise _BadLine(f"leg must be 1..{MAX_LEG}, got {leg}")
    record: dict[str, Any] = {
        "event_id": "",
        "tracking_id": _text(fields, "tracking_id"),
        "carrier": _text(fields, "carrier").upper(),
        "raw_code": raw_code,
        "raw_text": _text(fields, "raw_text"),
        "event_time_ms": _event_time_ms(fields),
        "facility_id": _optional_text(fields, "facility_id"),
        "location": None if lat is None else {"lat": lat, "lon": lon},
        "vehicle_id": _optional_text(fields, "vehicle_id"),
        "leg": leg,
        "source": PARTNER_FILE_SOURCE,
    }
    event_id = _text(fields, "event_id")
    record["event_id"] = event_id or _derive_event_id_safely(partner, record)
    return record


def _derive_event_id_safely(partner: str, record: dict[str, Any]) -> str:
    try:
        return derive_event_id(partner, record)
    except ValueError:
        # NaN/inf coordinates cannot go through strict JSON; such a line is rejected by validation
        # anyway, so any stable id is enough for its dead letter detail.
        loc = record["location"]
        safe = dict(record, location={"lat": repr(loc["lat"]), "lon": repr(loc["lon"])})
        return derive_event_id(partner, safe)
