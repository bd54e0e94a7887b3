"""Online road-speed model learned from the fleet's own GPS pings.

The model answers "how fast do our vans move here, at this hour of the week?" for the
ETA rule (``udfs/eta.py``). It is keyed by an H3 cell at a coarse resolution
(default 7, ~5 km²) crossed with the hour of the week (0 = Monday 00:00 UTC).

State layout
------------
The model is a flat ``dict[str, tuple[count, mean_mps, m2]]`` of *slots*. One ping
updates four slots, most specific first:

* ``"<cell>@<hour_of_week>"`` - this cell at this hour;
* ``"<cell>"``                - this cell at any hour;
* ``"<parent cell>"``         - the cell's parent (default resolution 5, ~250 km²);
* ``"fleet"``                 - every learnable ping.

A flat mapping of plain tuples was chosen because it pickles and JSON-encodes as is
(tuples come back as lists, which every reader here accepts), so it survives a
restart from a savepoint, and because it maps one to one onto a Flink ``MapState``
or onto a keyed stream of slots: an adapter may key by slot and keep one stats
tuple per key with :func:`update_stats`, then assemble a read model with
:func:`merge`.

Each slot is Welford's running mean/variance until it has ``max_weight_samples``
samples; after that the count stops growing and each new sample moves the mean by
``1/max_weight_samples``, i.e. the slot becomes an exponentially weighted average.
Exact statistics for young slots, and old slots still follow road works and
seasonal change instead of freezing on last year's traffic.

Hour-of-week is UTC because ``udfs/`` has no time-zone database. Each cell lies in
one zone, so its slots still line up with local rush hours. Daylight saving moves
local rush hour by one UTC hour for half the year, which blurs neighbouring slots
rather than mixing different places.

Known bias: only moving pings are learned (stops would be mostly delivery dwell,
which the ETA rule models separately), so the model also drops time stood at traffic
lights. Expected speeds are therefore moving speeds and run optimistic in stop-go
traffic; the ETA window and the circuity factor are where that is absorbed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import h3

from udfs.events import Ping

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HOURS_PER_WEEK = 168
# 1970-01-01 (day 0) was a Thursday; adding 3 makes Monday weekday 0.
_EPOCH_WEEKDAY_OFFSET = 3

FLEET_SLOT = "fleet"

# A slot is (count, mean_mps, m2) with m2 = count * population variance.
Stats = tuple[float, float, float]
SpeedModel = Mapping[str, Stats]
# (lat, lon, at_ms) -> (speed_mps, confidence); what the ETA rule consumes.
SpeedLookup = Callable[[float, float, int], tuple[float, float]]


@dataclass(frozen=True)
class SpeedModelConfig:
    cell_res: int = 7
    parent_res: int = 5
    # Below this many samples a slot is too thin to trust and the lookup falls back.
    min_samples: int = 20
    # Urban delivery-van average when the fleet has taught us nothing yet.
    default_speed_mps: float = 8.5
    # Faster than ~144 km/h is a GPS glitch for a delivery van, not traffic.
    max_speed_mps: float = 40.0
    # Slower than walking pace is a van standing at a stop or in a queue.
    min_moving_speed_mps: float = 1.0
    max_accuracy_m: float = 30.0
    max_weight_samples: int = 500
    # Confidence multiplier per fallback level: how well that level stands in for
    # "this cell at this hour".
    weight_cell_hour: float = 1.0
    weight_cell_any_hour: float = 0.7
    weight_parent: float = 0.5
    weight_fleet: float = 0.3
    weight_default: float = 0.1


DEFAULT_CONFIG = SpeedModelConfig()


def hour_of_week(event_time_ms: int) -> int:
    """0..167 with 0 = Monday 00:00 UTC. Floor division keeps pre-1970 times right."""
    days = event_time_ms // DAY_MS
    weekday = (days + _EPOCH_WEEKDAY_OFFSET) % 7
    return weekday * 24 + (event_time_ms // HOUR_MS) % 24


def cell_for(lat: float, lon: float, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> str:
    return h3.latlng_to_cell(lat, lon, cfg.cell_res)


def slot_keys(cell: str, how: int, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> tuple[str, str, str, str]:
    """Slots one observation feeds, most specific first (the lookup's fallback order)."""
    res = h3.get_resolution(cell)
    parent = h3.cell_to_parent(cell, cfg.parent_res) if res > cfg.parent_res else cell
    return (f"{cell}@{int(how)}", cell, parent, FLEET_SLOT)


def learnable_speed_mps(ping: Ping, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> float | None:
    """The ping's speed if the model may learn from it, else None.

    Cell-tower fixes and check-ins carry no trustworthy speed; poor accuracy fixes
    jump between cells and teach the wrong cell.
    """
    if ping.source != "GPS" or ping.speed_mps is None:
        return None
    if ping.accuracy_m is None or ping.accuracy_m > cfg.max_accuracy_m:
        return None
    speed = float(ping.speed_mps)
    if not math.isfinite(speed) or speed < cfg.min_moving_speed_mps or speed > cfg.max_speed_mps:
        return None
    return speed


def update_stats(stats: Stats | None, speed_mps: float, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> Stats:
    n, mean, m2 = stats if stats is not None else (0, 0.0, 0.0)
    cap = cfg.max_weight_samples
    delta = speed_mps - mean
    if n < cap:
        n += 1
        mean += delta / n
        m2 += delta * (speed_mps - mean)
        return (n, mean, m2)
    # Exponentially weighted regime: the count stays at cap, alpha = 1/cap.
    alpha = 1.0 / cap
    var = m2 / n
    mean += alpha * delta
    var = (1.0 - alpha) * (var + alpha * delta * delta)
    return (n, mean, var * n)


def merge_stats(a: Stats | None, b: Stats | None, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> Stats | None:
    """Chan's parallel combination; exact below the weight cap, proportional above it."""
    if a is None or a[0] == 0:
        return tuple(b) if b is not None else None
    if b is None or b[0] == 0:
        return tuple(a)
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    delta = mb - ma
    mean = ma + delta * nb / n
    m2 = m2a + m2b + delta * delta * na * nb / n
    if n > cfg.max_weight_samples:
        m2 *= cfg.max_weight_samples / n
        n = cfg.max_weight_samples
    return (n, mean, m2)


def observe(state: SpeedModel | None, cell: str, hour_of_week: int, speed_mps: float,
            cfg: SpeedModelConfig = DEFAULT_CONFIG) -> dict[str, Stats]:
    """Learn one speed sample; returns a new model and leaves ``state`` untouched.

    The caller has already decided the sample is learnable (see
    :func:`learnable_speed_mps`); out-of-range speeds are still refused here so a
    bad adapter cannot poison the fleet-wide slot.
    """
    new: dict[str, Stats] = dict(state) if state else {}
    if not (cfg.min_moving_speed_mps <= speed_mps <= cfg.max_speed_mps):
        return new
    for key in slot_keys(cell, hour_of_week, cfg):
        new[key] = update_stats(new.get(key), speed_mps, cfg)
    return new


def observe_ping(state: SpeedModel | None, ping: Ping, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> dict[str, Stats]:
    speed = learnable_speed_mps(ping, cfg)
    if speed is None:
        return dict(state) if state else {}
    return observe(state, cell_for(ping.lat, ping.lon, cfg), hour_of_week(ping.event_time_ms), speed, cfg)


def merge(a: SpeedModel | None, b: SpeedModel | None, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> dict[str, Stats]:
    """Combine two partial models, e.g. per-slot keyed state gathered into one read model."""
    out: dict[str, Stats] = dict(a) if a else {}
    for key, stats in (b or {}).items():
        merged = merge_stats(out.get(key), stats, cfg)
        if merged is not None:
            out[key] = merged
    return out


def expected_speed_mps(model: SpeedModel | None, cell: str, how: int,
                       cfg: SpeedModelConfig = DEFAULT_CONFIG) -> tuple[float, float]:
    """(speed_mps, confidence in [0, 1]) for ``cell`` at hour-of-week ``how``.

    Falls back cell+hour -> cell any hour -> parent cell -> learned fleet mean ->
    ``cfg.default_speed_mps`` until a slot has ``min_samples``. Confidence is the
    level's weight times n / (n + min_samples): it grows with evidence and never
    reaches 1, and a coarser level is never trusted as much as the exact slot.
    """
    model = model or {}
    weights = (cfg.weight_cell_hour, cfg.weight_cell_any_hour, cfg.weight_parent, cfg.weight_fleet)
    for key, weight in zip(slot_keys(cell, how, cfg), weights):
        stats = model.get(key)
        if stats is None:
            continue
        n, mean, _ = stats
        if n >= cfg.min_samples:
            return float(mean), weight * n / (n + cfg.min_samples)
    return cfg.default_speed_mps, cfg.weight_default


def make_speed_lookup(model: SpeedModel | None, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> SpeedLookup:
    """Adapt a model to the ``(lat, lon, at_ms) -> (speed_mps, confidence)`` the ETA rule takes."""
    frozen = model or {}

    def lookup(lat: float, lon: float, at_ms: int) -> tuple[float, float]:
        return expected_speed_mps(frozen, cell_for(lat, lon, cfg), hour_of_week(at_ms), cfg)

    return lookup



def slot_updates(model: SpeedModel | None, ping: Ping, cfg: SpeedModelConfig = DEFAULT_CONFIG) -> dict[str, Stats]:
    """Only the slots one ping changes, with their new stats ({} if it teaches nothing).

    For adapters that keep the model as one entry per slot (a Flink ``MapState``):
    they read and write four slots per ping instead of the whole model. ``model``
    needs only ``.get(slot)``.
    """
    speed = learnable_speed_mps(ping, cfg)
    if speed is None:
        return {}
    keys = slot_keys(cell_for(ping.lat, ping.lon, cfg), hour_of_week(ping.event_time_ms), cfg)
    current = model or {}
    return {key: update_stats(current.get(key), speed, cfg) for key in keys}
