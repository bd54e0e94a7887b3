"""Vehicle reads: Redis hash and GEO index for now, Cassandra for position history."""
from __future__ import annotations

from typing import Any

VEHICLE_KEY = "ff:vehicle:{}"
GEO_KEY = "ff:vehicles:geo"
FLOATS = frozenset({"lat", "lon", "speed_mps", "heading_deg", "accuracy_m"})
INTS = frozenset({"event_time_ms", "last_event_time_ms", "updated_ms"})
# Never shown even to dispatchers: the pseudonym is for analytics joins, not for people.
HIDDEN = frozenset({"driver_pseudonym"})

POSITIONS_CQL = ("SELECT event_time_ms, event_id, lat, lon, speed_mps, heading_deg, accuracy_m, source "
                 "FROM vehicle_positions WHERE vehicle_id = ? AND day = ? AND event_time_ms >= ? "
                 "AND event_time_ms <= ?")


def parse_vehicle(vehicle_id: str, raw: dict) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {"vehicle_id": vehicle_id}
    for k, v in raw.items():
        key, val = k.decode(), v.decode()
        if key in HIDDEN or key == "vehicle_id":
            continue
        if key == "fences":
            # The job writes "" for a van inside no fence: an empty list, not an unknown.
            out[key] = [f for f in val.split(",") if f]
        elif val == "":
            out[key] = None
        elif key in FLOATS or key in INTS:
            try:
                out[key] = int(float(val)) if key in INTS else float(val)
            except ValueError:
                out[key] = None
        else:
            out[key] = val
    return out


async def vehicles(redis, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for vid in ids:
        pipe.hgetall(VEHICLE_KEY.format(vid))
    out = {}
    for vid, raw in zip(ids, await pipe.execute()):
        v = parse_vehicle(vid, raw)
        if v is not None:
            out[vid] = v
    return out
