"""Which raw code each carrier would send for a lifecycle stage.

The simulator speaks each carrier's own dialect, so the lifecycle job's normaliser is
exercised for real: the code is found by reverse lookup of (status, detail) in the
same fleetflow/carriers/<CARRIER>.yaml files the normaliser reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

CARRIERS_DIR = Path(__file__).resolve().parent.parent / "carriers"

LABEL_CREATED = ("INFO_RECEIVED", "LABEL_CREATED")
PICKED_UP = ("IN_TRANSIT", "PICKED_UP")
ARRIVED_AT_FACILITY = ("IN_TRANSIT", "ARRIVED_AT_FACILITY")
DEPARTED_FACILITY = ("IN_TRANSIT", "DEPARTED_FACILITY")
IN_TRANSIT = ("IN_TRANSIT", "IN_TRANSIT")
OUT_FOR_DELIVERY = ("OUT_FOR_DELIVERY", "OUT_FOR_DELIVERY")
DELIVERED = ("DELIVERED", "DELIVERED")
ATTEMPT_FAILED = ("ATTEMPT_FAIL", "ATTEMPT_FAILED_RECIPIENT_ABSENT")
DAMAGED = ("EXCEPTION", "DAMAGED")
WEATHER_DELAY = ("EXCEPTION", "WEATHER_DELAY")
CUSTOMS_HOLD = ("EXCEPTION", "CUSTOMS_HOLD")
RETURN_TO_SENDER = ("RETURN_TO_SENDER", "RETURN_TO_SENDER")
HANDOFF_TO_CARRIER = ("IN_TRANSIT", "HANDOFF_TO_CARRIER")

STAGES = (LABEL_CREATED, PICKED_UP, ARRIVED_AT_FACILITY, DEPARTED_FACILITY, IN_TRANSIT, OUT_FOR_DELIVERY,
          DELIVERED, ATTEMPT_FAILED, DAMAGED, WEATHER_DELAY, CUSTOMS_HOLD, RETURN_TO_SENDER, HANDOFF_TO_CARRIER)


@dataclass(frozen=True)
class RawCode:
    code: str
    text: str


class MissingCarrierCode(LookupError):
    pass


@lru_cache(maxsize=None)
def _codes_by_stage(carrier: str, directory: str) -> dict[tuple[str, str], RawCode]:
    path = Path(directory) / f"{carrier}.yaml"
    if not path.is_file():
        raise MissingCarrierCode(f"no carrier mapping file {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    out: dict[tuple[str, str], RawCode] = {}
    for raw, entry in (doc.get("codes") or {}).items():
        stage = (str(entry.get("status")), str(entry.get("detail")))
        # First code in file order wins, so the choice is stable when a carrier has synonyms.
        out.setdefault(stage, RawCode(str(raw), str(entry.get("text") or "")))
    return out


def raw_code(carrier: str, stage: tuple[str, str], directory: Path = CARRIERS_DIR) -> RawCode:
    codes = _codes_by_stage(carrier, str(directory))
    try:
        return codes[stage]
    except KeyError:
        raise MissingCarrierCode(f"{carrier} has no raw code for {stage}") from None


def check_carriers(carriers: tuple[str, ...], directory: Path = CARRIERS_DIR) -> None:
    """Fail fast, before generating anything, if a carrier lacks a code the simulator will use."""
    for carrier in carriers:
        for stage in STAGES:
            raw_code(carrier, stage, directory)
