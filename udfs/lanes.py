"""Lane transit-time model, for parcels that are not on a delivery van yet.

A lane is (origin_hub, destination_hub, carrier, service_level). Its transit time,
measured from the shipment entering the lane (``since_ms``, the origin-hub
departure) to delivery, is learned from completed deliveries into a histogram of
fixed, log-spaced buckets.

Why fixed log buckets rather than P² or a t-digest: transit times span minutes to
weeks and relative precision is what matters (10 % of 2 h and 10 % of 3 days are
equally useful), log buckets give exactly that with ~100 sparse integer-keyed
counts; two histograms of one lane simply add, so per-partition state merges; and
the state is a plain dict, so it survives a savepoint and reads back from JSON. P²
tracks one quantile per marker set and cannot be merged.

The bucket geometry is stored in the state itself, so a config change cannot
silently reinterpret counts learned under the old geometry after a restart.

Counts are halved whenever their total passes ``max_weight``: old deliveries fade
geometrically, and a lane that changes (a new linehaul schedule) re-learns within
a few hundred deliveries instead of never.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from udfs.decision import Decision
from udfs.eta import LOADED, Assignment, EtaUpdate, ParcelDone
from udfs.validation import ID_FIELDS, ids_reason

BASIS_LANE = "LANE"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# (p10, p50, p90) transit in ms per service level: what we promise before we know better.
DEFAULT_SERVICE_LEVEL_TRANSIT_MS: dict[str, tuple[int, int, int]] = {
    "SAME_DAY": (3 * HOUR_MS, 6 * HOUR_MS, 10 * HOUR_MS),
    "NEXT_DAY": (16 * HOUR_MS, 22 * HOUR_MS, 30 * HOUR_MS),
    "EXPRESS": (1 * DAY_MS, 40 * HOUR_MS, 60 * HOUR_MS),
    "STANDARD": (2 * DAY_MS, 3 * DAY_MS, 5 * DAY_MS),
    "ECONOMY": (3 * DAY_MS, 5 * DAY_MS, 8 * DAY_MS),
}


@dataclass(frozen=True)
class Lane:
    origin_hub: str
    destination_hub: str
    carrier: str
    service_level: str

    @property
    def key(self) -> str:
        return f"{self.origin_hub}>{self.destination_hub}|{self.carrier}|{self.service_level}"


@dataclass(frozen=True)
class LaneConfig:
    # Bucket geometry for new state: [min_transit_ms * ratio^b, min_transit_ms * ratio^(b+1)).
    min_transit_ms: int = 10 * 60_000
    bucket_ratio: float = 1.1
    max_transit_ms: int = 60 * DAY_MS
    # Below this many deliveries the lane falls back to its service level's defaults.
    min_samples: float = 20
    max_weight: float = 2000
    default_service_level: str = "STANDARD"
    default_confidence: float = 0.2
    service_level_transit_ms: Mapping[str, tuple[int, int, int]] = field(
        default_factory=lambda: dict(DEFAULT_SERVICE_LEVEL_TRANSIT_MS))


DEFAULT_CONFIG = LaneConfig()


def _bucket(transit_ms: float, min_ms: float, ratio: float, max_bucket: int) -> int:
    if transit_ms <= min_ms:
        return 0
    return min(int(math.log(transit_ms / min_ms) / math.log(ratio)), max_bucket)


def _max_bucket(cfg: LaneConfig) -> int:
    return int(math.ceil(math.log(cfg.max_transit_ms / cfg.min_transit_ms) / math.log(cfg.bucket_ratio)))


def new_state(cfg: LaneConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    return {"v": 1, "min_ms": cfg.min_transit_ms, "ratio": cfg.bucket_ratio,
            "max_bucket": _max_bucket(cfg), "n": 0.0, "counts": {}}


def sample_weight(state: Mapping[str, Any] | None) -> float:
    return float(state["n"]) if state else 0.0


def observe(state: Mapping[str, Any] | None, transit_ms: int, cfg: LaneConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """Learn one completed delivery's lane transit; returns a new state.

    Non-positive transits are clock skew between the scan sources, not data.
    """
    st = dict(state) if state else new_state(cfg)
    if transit_ms <= 0:
        return st
    # JSON turns int keys into strings; normalise so both forms read back.
    counts = {int(b): float(c) for b, c in st["counts"].items()}
    b = _bucket(transit_ms, st["min_ms"], st["ratio"], st["max_bucket"])
    counts[b] = counts.get(b, 0.0) + 1.0
    n = float(st["n"]) + 1.0
    if n > cfg.max_weight:
        counts = {k: c / 2 for k, c in counts.items() if c / 2 >= 0.01}
        n = sum(counts.values())
    st["counts"] = counts
    st["n"] = n
    return st


def merge(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Add two histograms of the same lane and geometry (e.g. from two partitions)."""
    if not a:
        return dict(b) if b else None
    if not b:
        return dict(a)
    if (a["min_ms"], a["ratio"]) != (b["min_ms"], b["ratio"]):
        raise ValueError("cannot merge lane histograms with different bucket geometry")
    counts = {int(k): float(c) for k, c in a["counts"].items()}
    for k, c in b["counts"].items():
        counts[int(k)] = counts.get(int(k), 0.0) + float(c)
    return dict(a, counts=counts, n=float(a["n"]) + float(b["n"]))


def _pieces(state: Mapping[str, Any], above_ms: float) -> list[tuple[float, float, float]]:
    """(lo_ms, hi_ms, weight) per bucket, truncated to transits longer than above_ms.

    Within a bucket mass is spread evenly in log-time, matching how buckets are cut.
    """
    min_ms, ratio = float(state["min_ms"]), float(state["ratio"])
    out = []
    for b in sorted(int(k) for k in state["counts"]):
        weight = float(state["counts"].get(b, state["counts"].get(str(b), 0.0)))
        lo, hi = min_ms * ratio ** b, min_ms * ratio ** (b + 1)
        if hi <= above_ms:
            continue
        if lo < above_ms:
            weight *= math.log(hi / above_ms) / math.log(hi / lo)
            lo = above_ms
        if weight > 0:
            out.append((lo, hi, weight))
    return out


def quantile_ms(state: Mapping[str, Any] | None, q: float, above_ms: float = 0.0) -> int | None:
    """Transit-time quantile ``q``, optionally of the transits longer than ``above_ms``
    (for a shipment that has already been ``above_ms`` on the lane). None without data."""
    if not state:
        return None
    pieces = _pieces(state, max(above_ms, 0.0))
    total = sum(w for _, _, w in pieces)
    if total <= 0:
        return None
    target = min(max(q, 0.0), 1.0) * total
    cum = 0.0
    for lo, hi, w in pieces:
        if cum + w >= target:
            frac = (target - cum) / w
            return round(lo * (hi / lo) ** frac)
        cum += w
    return round(pieces[-1][1])


def lane_eta(model: Mapping[str, Any] | None, lane: Lane, since_ms: int, tracking_id: str, *,
             now_ms: int | None = None, cfg: LaneConfig = DEFAULT_CONFIG) -> EtaUpdate:
    """ETA from the lane's history: p50, with p10..p90 as the window.

    ``model`` is this lane's histogram (``None`` if the lane has none). Given
    ``now_ms``, quantiles are of the transits longer than the time already spent on
    the lane, so a parcel past the median is not told it arrived in the past. When
    the lane has fewer than ``min_samples`` deliveries, or the parcel has outlasted
    every recorded transit, the service level's defaults apply; a parcel past even
    those gets the default spread again, counted from now, at half confidence.
    """
    elapsed_ms = max(0, now_ms - since_ms) if now_ms is not None else 0
    n = sample_weight(model)
    quantiles = None
    confidence = cfg.default_confidence
    if n >= cfg.min_samples:
        qs = [quantile_ms(model, q, elapsed_ms) for q in (0.1, 0.5, 0.9)]
        if None not in qs:
            quantiles = tuple(qs)
            confidence = n / (n + cfg.min_samples)
    if quantiles is None:
        level = lane.service_level if lane.service_level in cfg.service_level_transit_ms else cfg.default_service_level
        quantiles = cfg.service_level_transit_ms[level]
    p10, p50, p90 = quantiles
    earliest_ms, eta_ms, latest_ms = since_ms + p10, since_ms + p50, since_ms + p90
    if now_ms is not None:
        if eta_ms < now_ms:
            earliest_ms, eta_ms, latest_ms = now_ms, now_ms + (p50 - p10), now_ms + (p90 - p10)
            confidence /= 2
        earliest_ms = max(earliest_ms, now_ms)
    return EtaUpdate(tracking_id, int(eta_ms), int(earliest_ms), int(latest_ms), confidence, BASIS_LANE,
                     now_ms if now_ms is not None else since_ms)


# --- Parcel tracker: which van a parcel is on, which lane it travels, when it is done ---
#
# Lane derivation from ``ff.shipment-states`` (which carries one facility_id per state,
# not the plan's legs):
#
# * origin hub: the facility of the first IN_TRANSIT state with a facility on the
#   shipment's current leg; ``since_ms`` is the time of the latest state still at that
#   facility (its departure once it has left).
# * destination: each further facility the leg passes through (destination hub, then
#   depot). The lane a parcel is predicted on is origin > the last facility seen, or
#   origin > ``*`` while it has not reached another facility yet.
# * on delivery the transit ``delivered - since_ms`` is learned under origin > ``*``
#   and under origin > every facility the parcel passed, so a parcel at any point of
#   its journey finds a lane with the same history, conditioned on time already spent.
# * A new leg (handover to another carrier) starts a new lane: lanes are per carrier.

IN_TRANSIT = "IN_TRANSIT"
DELIVERED = "DELIVERED"
ANY_DESTINATION = "*"
# Outcomes that end a parcel's visit to its stop; the van stops estimating it.
DONE_FOR_VAN = frozenset({"DELIVERED", "ATTEMPT_FAIL", "AVAILABLE_FOR_PICKUP", "RETURN_TO_SENDER",
                          "CANCELLED", "EXPIRED"})


@dataclass(frozen=True)
class ShipmentView:
    """One ``ff.shipment-states`` record (avro/shipment_states.avsc) as the ETA job needs it.

    ``lane`` is filled in by :func:`parcel_step` for the promise rule."""
    tracking_id: str
    version: int
    status: str
    status_detail: str
    event_time_ms: int
    carrier: str | None
    leg: int
    facility_id: str | None
    service_level: str
    promised_end_ms: int | None
    terminal: bool
    lane: str | None = None

    @property
    def event_id(self) -> str:
        # Versions are per tracking id and grow by one per change: the natural dedup key.
        return f"{self.tracking_id}#{self.version}"

    @staticmethod
    def from_record(r: Mapping[str, Any]) -> "ShipmentView":
        return ShipmentView(tracking_id=r["tracking_id"], version=int(r["version"]), status=r["status"],
                            status_detail=r.get("status_detail") or "", event_time_ms=int(r["event_time_ms"]),
                            carrier=r.get("carrier"), leg=int(r.get("leg") or 1), facility_id=r.get("facility_id"),
                            service_level=r.get("service_level") or "STANDARD",
                            promised_end_ms=r.get("promised_end_ms"), terminal=bool(r.get("terminal")))


def shipment_state_problem(r: Mapping[str, Any]) -> str | None:
    """Dead-letter reason for a decoded shipment state the ETA job cannot use, or None.

    Its ids get the shared checks (``udfs.validation.ID_FIELDS["shipment_states"]``)."""
    reason = ids_reason(r, ID_FIELDS["shipment_states"])
    if reason is not None:
        return reason
    if int(r.get("version") or 0) < 1:
        return "BAD_VERSION"
    if int(r.get("event_time_ms") or 0) <= 0:
        return "BAD_EVENT_TIME"
    return None


@dataclass(frozen=True)
class LaneQuery:
    lane: Lane
    tracking_id: str
    since_ms: int
    as_of_ms: int

    @property
    def lane_key(self) -> str:
        return self.lane.key


@dataclass(frozen=True)
class LaneObservation:
    lane_key: str
    tracking_id: str
    transit_ms: int


@dataclass(frozen=True)
class TrackerConfig:
    # How long a parcel's tracker outlives its last event: long enough to join a
    # straggling assignment with its outcome, as long as the shipment job keeps a
    # live shipment (30 d idle expiry).
    idle_ttl_ms: int = 30 * DAY_MS
    terminal_ttl_ms: int = 2 * DAY_MS


DEFAULT_TRACKER_CONFIG = TrackerConfig()


def _lane(st: Mapping[str, Any]) -> Lane | None:
    origin = st.get("origin")
    if not origin:
        return None
    via = st.get("via") or []
    return Lane(origin[0], via[-1] if via else ANY_DESTINATION, st.get("carrier") or "UNKNOWN",
                st.get("service_level") or "STANDARD")


def _track_lane(st: dict[str, Any], view: ShipmentView) -> None:
    if st.get("lane_leg") != view.leg:
        st["lane_leg"], st["origin"], st["via"] = view.leg, None, []
    if view.status != IN_TRANSIT or not view.facility_id:
        return
    origin = st.get("origin")
    if origin is None:
        st["origin"] = [view.facility_id, view.event_time_ms]
    elif view.facility_id == origin[0] and not st["via"]:
        st["origin"] = [origin[0], max(origin[1], view.event_time_ms)]
    elif view.facility_id != origin[0] and view.facility_id not in st["via"]:
        st["via"] = st["via"] + [view.facility_id]


def _tracker_deadline(st: Mapping[str, Any], cfg: TrackerConfig) -> int:
    return st["last_ms"] + (cfg.terminal_ttl_ms if st.get("terminal") else cfg.idle_ttl_ms)


def parcel_step(state: Mapping[str, Any] | None, event: Any, now_ms: int,
                cfg: TrackerConfig = DEFAULT_TRACKER_CONFIG) -> Decision:
    """Per-parcel join of assignments and shipment states, keyed by tracking_id.

    Emits :class:`ParcelDone` to the van that loaded the parcel once its outcome is
    known (in either arrival order: an outcome that comes before the LOADED it
    follows is held and sent when the LOADED arrives), :class:`LaneQuery` for an
    IN_TRANSIT parcel that is not on a van, :class:`LaneObservation` once per lane on
    delivery, and every newer :class:`ShipmentView`, with its lane filled in, for the
    promise rule. Older or repeated versions are dropped.

    State (plain dict): ``vehicle_id``/``asg_ms`` (newest assignment; vehicle None
    after UNLOADED), ``version``, ``status``, ``done`` [time, status], carrier,
    service level, the lane trace (``lane_leg``, ``origin`` [facility, since_ms],
    ``via``), ``learned`` and one timer. Cleared ``terminal_ttl_ms`` after the last
    event of a terminal shipment, else ``idle_ttl_ms`` after it.
    """
    st = dict(state) if state else {}
    emits: list[Any] = []
    if isinstance(event, Assignment):
        if event.event_time_ms < st.get("asg_ms", -1):
            return Decision(state)
        st["asg_ms"] = event.event_time_ms
        st["vehicle_id"] = event.vehicle_id if event.action == LOADED else None
        done = st.get("done")
        if st["vehicle_id"] and done and done[0] >= event.event_time_ms:
            emits.append(ParcelDone(event.vehicle_id, event.tracking_id, done[0], done[1]))
        event_ms = event.event_time_ms
    else:
        view: ShipmentView = event
        if view.version <= st.get("version", 0):
            return Decision(state)
        st["version"] = view.version
        st["status"] = view.status
        st["terminal"] = view.terminal
        if view.carrier:
            st["carrier"] = view.carrier
        st["service_level"] = view.service_level
        _track_lane(st, view)
        lane = _lane(st)
        if view.status in DONE_FOR_VAN:
            st["done"] = [view.event_time_ms, view.status]
            if st.get("vehicle_id") and st.get("asg_ms", 0) <= view.event_time_ms:
                emits.append(ParcelDone(st["vehicle_id"], view.tracking_id, view.event_time_ms, view.status))
        elif st.get("done") and view.status not in DONE_FOR_VAN:
            st["done"] = None  # back in the network (a return to the depot, a re-delivery)
        if view.status == IN_TRANSIT and lane is not None and not st.get("vehicle_id"):
            emits.append(LaneQuery(lane, view.tracking_id, st["origin"][1], view.event_time_ms))
        if view.status == DELIVERED and lane is not None and not st.get("learned"):
            transit_ms = view.event_time_ms - st["origin"][1]
            if transit_ms > 0:
                st["learned"] = True
                for dest in [ANY_DESTINATION] + list(st["via"]):
                    emits.append(LaneObservation(dataclasses.replace(lane, destination_hub=dest).key,
                                                 view.tracking_id, transit_ms))
        emits.append(dataclasses.replace(view, lane=lane.key if lane else None))
        event_ms = view.event_time_ms
    st["last_ms"] = max(st.get("last_ms", event_ms), event_ms)
    deadline = _tracker_deadline(st, cfg)
    pending = st.get("timer_ms")
    if pending is None:
        st["timer_ms"] = deadline
        return Decision(st, tuple(emits), deadline)
    if deadline < pending:
        # Went terminal: the shorter retention replaces the idle timer.
        st["timer_ms"] = deadline
        return Decision(st, tuple(emits), deadline, cancel_timers_ms=(pending,))
    return Decision(st, tuple(emits))


def parcel_on_timer(state: Mapping[str, Any] | None, timer_ms: int,
                    cfg: TrackerConfig = DEFAULT_TRACKER_CONFIG) -> Decision:
    if not state:
        return Decision(None)
    if timer_ms != state.get("timer_ms"):
        return Decision(state)  # superseded
    deadline = _tracker_deadline(state, cfg)
    if timer_ms >= deadline:
        return Decision(None)
    return Decision(dict(state, timer_ms=deadline), timer_ms=deadline)


def lane_step(state: Mapping[str, Any] | None, event: Any, now_ms: int, cfg: LaneConfig = DEFAULT_CONFIG) -> Decision:
    """Per-lane rule, keyed by lane key: learn from observations, answer queries.

    State: the lane's histogram (:func:`observe`). No timer: the adapter puts a state
    TTL on it so discontinued lanes go (see docs/state.md).
    """
    if isinstance(event, LaneObservation):
        return Decision(observe(state, event.transit_ms, cfg))
    q: LaneQuery = event
    return Decision(state, (lane_eta(state, q.lane, q.since_ms, q.tracking_id, now_ms=q.as_of_ms, cfg=cfg),))
