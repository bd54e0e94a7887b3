"""Which raw code each carrier would send for a lifecycle stage.

The simulator speaks each carrier's own dialect, so the lifecycle job's normaliser is
exercised for real: the code is found by reverse lookup of (status, detail) in the
same fleetflow/carriers/<carrier>.yaml files the normaliser reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fleetflow.carrier_mappings import CARRIERS_DIR, load_all

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

# Not every carrier file has to map this one; without it the van's return is an ARRIVED_AT_FACILITY.
AVAILABLE_FOR_PICKUP = ("AVAILABLE_FOR_PICKUP", "AVAILABLE_FOR_PICKUP")

STAGES = (LABEL_CREATED, PICKED_UP, ARRIVED_AT_FACILITY, DEPARTED_FACILITY, IN_TRANSIT, OUT_FOR_DELIVERY,
          DELIVERED, ATTEMPT_FAILED, DAMAGED, WEATHER_DELAY, CUSTOMS_HOLD, RETURN_TO_SENDER, HANDOFF_TO_CARRIER)


@dataclass(frozen=True)
class RawCode:
    code: str
    text: str


class MissingCarrierCode(LookupError):
    pass


@lru_cache(maxsize=None)
def _codes_by_stage(directory: str) -> dict[str, dict[tuple[str, str], RawCode]]:
    out: dict[str, dict[tuple[str, str], RawCode]] = {}
    for carrier, mapping in load_all(Path(directory)).items():
        stages: dict[tuple[str, str], RawCode] = {}
        for raw, code in mapping.codes.items():
            # First code in file order wins, so the choice is stable when a carrier has synonyms.
            stages.setdefault((code.status.value, code.detail.value), RawCode(raw, code.text))
        out[carrier] = stages
    return out


def raw_code(carrier: str, stage: tuple[str, str], directory: Path | None = None) -> RawCode:
    codes = _codes_by_stage(str(directory or CARRIERS_DIR))
    try:
        return codes[carrier][stage]
    except KeyError:
        raise MissingCarrierCode(f"{carrier} has no raw code for {stage} in {directory or CARRIERS_DIR}") from None


def has_stage(carrier: str, stage: tuple[str, str], directory: Path | None = None) -> bool:
    return stage in _codes_by_stage(str(directory or CARRIERS_DIR)).get(carrier, {})


def known_carriers(directory: Path | None = None) -> frozenset[str]:
    return frozenset(_codes_by_stage(str(directory or CARRIERS_DIR)))


def check_carriers(carriers: tuple[str, ...], directory: Path | None = None) -> None:
    """Fail fast, before generating anything, if a carrier lacks a code the simulator will use."""
    for carrier in carriers:
        for stage in STAGES:
            raw_code(carrier, stage, directory)
