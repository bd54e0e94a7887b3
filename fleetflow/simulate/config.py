"""Every knob of the simulator in one frozen dataclass, with the defaults the CLI shows."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

# 2026-03-02 08:00:00 UTC, a Monday: the same instant tests/builders.py calls T0_MS.
DEFAULT_START_MS = 1_772_438_400_000
DEFAULT_SEED = 42
DEFAULT_DURATION_S = 1800.0
DEFAULT_VANS = 10
# A 3-4.5 h route with dwell, long enough for the driver's break (due after 2-3 h) to fall inside it.
DEFAULT_STOPS_PER_VAN = 30

# Fault rates are probabilities per clean ping or scan.
DEFAULT_DUPLICATE_RATE = 0.02
DEFAULT_OUT_OF_ORDER_RATE = 0.02
DEFAULT_OUT_OF_ORDER_BOUND_S = 60.0
DEFAULT_LATE_RATE = 0.01
DEFAULT_MALFORMED_RATE = 0.005
# Breakdowns per van per hour of driving; 0.1 means roughly one van in ten stalls in an hour.
DEFAULT_STALL_RATE_PER_HOUR = 0.1
# Probability, at each ping, that the device goes dark for a while / falls back to a cell fix.
DEFAULT_DROPOUT_RATE = 0.01
DEFAULT_CELL_FALLBACK_RATE = 0.02
DEFAULT_MULTI_LEG_RATE = 0.10
DEFAULT_FAILED_ATTEMPT_RATE = 0.07
DEFAULT_EXCEPTION_RATE = 0.03
# Share of customer stops where the van parks right at the edge of the stop's fence (inside,
# within fleet.EDGE_PARK_BAND_M of the boundary), so GPS noise crosses the boundary both ways.
DEFAULT_EDGE_PARK_RATE = 0.0
# Time between two pings of a tracker, drawn uniformly per ping; power-save trackers report less often.
DEFAULT_PING_INTERVAL_MIN_S = 10.0
DEFAULT_PING_INTERVAL_MAX_S = 30.0


@dataclass(frozen=True)
class SimConfig:
    seed: int = DEFAULT_SEED
    start_ms: int = DEFAULT_START_MS
    duration_s: float = DEFAULT_DURATION_S
    vans: int = DEFAULT_VANS
    stops_per_van: int = DEFAULT_STOPS_PER_VAN
    duplicate_rate: float = DEFAULT_DUPLICATE_RATE
    out_of_order_rate: float = DEFAULT_OUT_OF_ORDER_RATE
    out_of_order_bound_s: float = DEFAULT_OUT_OF_ORDER_BOUND_S
    late_rate: float = DEFAULT_LATE_RATE
    malformed_rate: float = DEFAULT_MALFORMED_RATE
    stall_rate_per_hour: float = DEFAULT_STALL_RATE_PER_HOUR
    dropout_rate: float = DEFAULT_DROPOUT_RATE
    cell_fallback_rate: float = DEFAULT_CELL_FALLBACK_RATE
    multi_leg_rate: float = DEFAULT_MULTI_LEG_RATE
    failed_attempt_rate: float = DEFAULT_FAILED_ATTEMPT_RATE
    exception_rate: float = DEFAULT_EXCEPTION_RATE
    edge_park_rate: float = DEFAULT_EDGE_PARK_RATE
    ping_interval_min_s: float = DEFAULT_PING_INTERVAL_MIN_S
    ping_interval_max_s: float = DEFAULT_PING_INTERVAL_MAX_S
    # HMAC key for driver pseudonyms; None means fleetflow.privacy's env/dev-key rule.
    driver_key: bytes | None = None
    # Where results go; simulate() needs at least one of out_path / bootstrap to be useful.
    out_path: str | None = None
    truth_path: str | None = None
    bootstrap: str | None = None
    # Events per second when sending to Kafka; 0 sends as fast as the broker takes them.
    rate_eps: float = 0.0
    # Instead of a rate: follow simulated time, N times faster than real time (1 = real time).
    speedup: float = 0.0
    progress: bool = False
    carriers: tuple[str, ...] = field(default=("DHL", "UPS", "FEDEX", "USPS"))

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)

    def __post_init__(self) -> None:
        if self.vans < 1:
            raise ValueError("vans must be >= 1")
        if self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        if self.stops_per_van < 1:
            raise ValueError("stops_per_van must be >= 1")
        for name in ("duplicate_rate", "out_of_order_rate", "late_rate", "malformed_rate", "dropout_rate",
                     "cell_fallback_rate", "multi_leg_rate", "failed_attempt_rate", "exception_rate",
                     "edge_park_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if not 0 < self.ping_interval_min_s <= self.ping_interval_max_s:
            raise ValueError("need 0 < ping_interval_min_s <= ping_interval_max_s")
        if self.duplicate_rate + self.out_of_order_rate + self.late_rate > 1.0:
            raise ValueError("duplicate_rate + out_of_order_rate + late_rate must not exceed 1")


def rng_for(seed: int, *parts: object) -> random.Random:
    """An independent stream per concern, so adding a van or a fault type does not reshuffle the rest.

    String seeds go through SHA-512 in CPython, so this is stable across processes and PYTHONHASHSEED.
    """
    return random.Random("/".join([str(seed), *map(str, parts)]))
