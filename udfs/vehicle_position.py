"""Latest position per vehicle, and a history row for every accepted ping.

Out-of-order pings still become history rows (Cassandra orders them by event time) but
never move the vehicle's current position backwards.
"""
from __future__ import annotations

from dataclasses import dataclass

from udfs.decision import Decision
from udfs.events import Ping

MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class PositionState:
    last_event_time_ms: int


@dataclass(frozen=True)
class PositionRow:
    vehicle_id: str
    day: int  # days since epoch (UTC): the Cassandra partition bucket
    event_time_ms: int
    event_id: str
    lat: float
    lon: float
    speed_mps: float | None
    heading_deg: float | None
    accuracy_m: float | None
    source: str


@dataclass(frozen=True)
class VehiclePosition:
    vehicle_id: str
    driver_pseudonym: str | None
    event_time_ms: int
    lat: float
    lon: float
    speed_mps: float | None
    heading_deg: float | None
    accuracy_m: float | None
    source: str


def step(state: PositionState | None, ping: Ping, now_ms: int) -> Decision[PositionState]:
    row = PositionRow(ping.vehicle_id, ping.event_time_ms // MS_PER_DAY, ping.event_time_ms, ping.event_id,
                      ping.lat, ping.lon, ping.speed_mps, ping.heading_deg, ping.accuracy_m, ping.source)
    if state is not None and ping.event_time_ms <= state.last_event_time_ms:
        return Decision(state, (row,))
    current = VehiclePosition(ping.vehicle_id, ping.driver_pseudonym, ping.event_time_ms, ping.lat, ping.lon,
                              ping.speed_mps, ping.heading_deg, ping.accuracy_m, ping.source)
    return Decision(PositionState(ping.event_time_ms), (row, current))
