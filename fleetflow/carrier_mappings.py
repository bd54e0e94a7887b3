"""Load and check the carrier mapping files in ``fleetflow/carriers/``.

Each ``<carrier>.yaml`` is parsed into ``udfs.normalise.CarrierMapping`` (the type the
lifecycle job keeps as broadcast state). ``to_record`` turns one into the
``carrier_mappings`` Avro record that is published on ``ff.carrier-mappings``; from
there ``udfs.normalise.apply_mapping_update`` validates it again before it is used,
because the topic also accepts records that never went through this loader.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from udfs.normalise import CarrierMapping, parse_mapping
from udfs.taxonomy import DETAIL_STATUS, Status

CARRIERS_DIR = Path(__file__).resolve().parent / "carriers"


class CarrierMappingError(ValueError):
    """One or more carrier files are invalid. ``errors`` lists every problem as ``file: message``."""

    def __init__(self, errors: list[str]):
        super().__init__("invalid carrier mappings:\n  " + "\n  ".join(errors))
        self.errors = errors


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys. Plain YAML keeps the last of two equal
    keys silently, which would hide a code mapped twice with different meanings."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass


def validate_mapping(obj: Any) -> list[str]:
    """Every problem with one mapping (a parsed YAML/Avro dict or a CarrierMapping):
    unknown status or detail, detail not belonging to its status, missing REQUIRED_PAIRS,
    duplicate codes, empty carrier, non-string codes, bad custom field targets."""
    return parse_mapping(obj)[1]


def _check_file(path: Path) -> tuple[CarrierMapping | None, list[str]]:
    try:
        obj = parse_yaml(Path(path).read_text())
    except yaml.YAMLError as exc:
        return None, [f"not valid YAML: {exc}"]
    mapping, errors = parse_mapping(obj)
    carrier = obj.get("carrier") if isinstance(obj, dict) else None
    if isinstance(carrier, str) and carrier.strip() and Path(path).stem != carrier.strip().lower():
        # One file per carrier, named after it, so two files cannot fight over a carrier.
        errors.append(f"file name {Path(path).name} must be {carrier.strip().lower()}.yaml")
    return (None if errors else mapping), errors


def validate_file(path: Path) -> list[str]:
    return _check_file(path)[1]


def load_file(path: Path) -> CarrierMapping:
    mapping, errors = _check_file(path)
    if mapping is None:
        raise CarrierMappingError([f"{Path(path).name}: {e}" for e in errors])
    return mapping


def mapping_files(directory: Path = CARRIERS_DIR) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.yaml") if p.is_file())


def load_all(directory: Path = CARRIERS_DIR) -> dict[str, CarrierMapping]:
    """Every carrier file in ``directory``, keyed by carrier. All files are checked
    before anything is returned, and all errors are reported together."""
    mappings: dict[str, CarrierMapping] = {}
    errors: list[str] = []
    for path in mapping_files(directory):
        try:
            m = load_file(path)
        except CarrierMappingError as exc:
            errors.extend(exc.errors)
            continue
        mappings[m.carrier] = m
    if errors:
        raise CarrierMappingError(errors)
    return mappings


def to_record(mapping: CarrierMapping, updated_time_ms: int) -> dict[str, Any]:
    """The ``carrier_mappings`` Avro record for one mapping (what ``ff.carrier-mappings`` carries)."""
    return {
        "carrier": mapping.carrier,
        "version": mapping.version,
        "codes": [{"raw_code": c.raw_code, "status": c.status.value, "detail": c.detail.value, "text": c.text}
                  for c in sorted(mapping.codes.values(), key=lambda c: c.raw_code)],
        "field_mappings": dict(mapping.custom_fields),
        "updated_time_ms": int(updated_time_ms),
    }


def coverage(mapping: CarrierMapping) -> dict[str, Any]:
    """How much of the taxonomy a carrier's codes reach, for reviews of a new carrier file."""
    pairs = mapping.pairs()
    covered_details = {d for _, d in pairs}
    covered_statuses = {s for s, _ in pairs}
    return {
        "codes": len(mapping.codes),
        "pairs": len(pairs),
        "statuses": sorted(s.value for s in covered_statuses),
        "missing_statuses": sorted(s.value for s in Status if s not in covered_statuses),
        "missing_details": sorted(d.value for d in DETAIL_STATUS if d not in covered_details),
    }
