"""Which fences is this van in? ENTER/EXIT with hysteresis, per vehicle.

:func:`step` folds one ping into a vehicle's :class:`MembershipState` and emits
:class:`GeofenceEvent` s. The rules, each aimed at a classic tracking-platform failure:

ENTER needs evidence, not one fix
    A good ping inside a fence opens a *candidate*. The candidate becomes ENTER once
    it has ``fence.min_pings`` consecutive pings inside, or once a ping inside comes
    ``fence.dwell_ms`` or more after the first one. ENTER carries the time of the first
    ping inside (when the van arrived), not the time it was confirmed. A good ping
    outside the fence before confirmation drops the candidate, so one jittery fix
    across the edge of a fence the van is driving past enters nothing.

EXIT needs the van clear of the exit buffer
    A member fence is left only when a good ping falls outside the fence grown by
    ``fence.exit_buffer_m``. Pings wandering between the fence and the buffer are
    edge jitter and change nothing. EXIT carries the time of the first good ping
    outside the fence itself (when the van actually left), not the time it was
    confirmed.

Low-quality pings may confirm but never initiate
    A ping is *low quality* when its source is CELL, or ``accuracy_m`` exceeds
    ``cfg.max_accuracy_m`` (a ping with no accuracy counts as good unless
    ``cfg.unknown_accuracy_is_good`` is False). Such a ping counts towards an
    existing candidate when it lands inside that fence. It cannot start a candidate,
    cancel one, start an EXIT, or move the recorded exit time, and it is never an end
    of a sparse segment. A cell-tower fix 800 m off should neither invent a visit nor
    end one.

Out-of-order pings are ignored, and counted
    A ping older than the newest one seen (``last_event_time_ms``) changes nothing but
    ``out_of_order_pings``. A ping with the same time as the newest is a redelivery and
    only bumps ``duplicate_pings``, so it cannot count twice towards ``min_pings``. A
    buffered upload replayed late can therefore never re-enter or re-exit a fence.

Sparse pings still see fences crossed between fixes
    When two consecutive good pings are ``cfg.sparse_gap_ms`` or
    ``cfg.sparse_gap_m`` apart, the straight segment between them is tested. Each
    fence the segment runs through, where neither ping is inside or within the
    fence's exit buffer, and the van is not already a member or a candidate, gets
    an ENTER and an EXIT with
    ``interpolated=True``. Their times are interpolated linearly along the segment,
    which assumes constant speed. Dwell and ``min_pings`` are not applied, because
    there is nothing to count; consumers that want only observed visits filter on
    ``interpolated``. Closer pings are not tested: dense tracks show visits
    directly, and a clipped corner between two dense fixes is a drive-past. A
    segment ending within a fence's exit buffer is not tested against that fence:
    the van is at the fence's edge, and when it drives in the observed ENTER
    follows seconds later. An interpolated visit just before it was the flap
    (EXIT then ENTER of one fence within seconds) that bench/geofence_accuracy.py
    found where the straight chord cut the corner of a stop the road went round. A
    candidate that one good fix opened and the next good fix, after a sparse gap,
    finds outside, is dropped like any other: one fix is not enough evidence for a
    visit, however long the gap around it.

No duplicates
    ENTER is only ever emitted for a fence the van is not a member of, and membership
    ends only with EXIT, so the output alternates ENTER, EXIT per (vehicle, fence).
    ``event_id`` is derived from (vehicle, fence, type, time), so a replay produces
    the same ids and an upserting sink stores each event once.

State and timers
    The state holds member fences, pending candidates, the last good fix and the
    counters. At most one event-time timer is pending: the expiry at
    ``last_event_time_ms + cfg.state_ttl_ms``. It is armed once and re-armed lazily by
    :func:`on_timer`, not moved on every ping. When it fires on a van that has been
    silent for the whole TTL, open memberships are closed with EXIT
    ``reason=STATE_EXPIRED`` at the last ping time, and the state is cleared. This
    keeps the ENTER/EXIT alternation intact even after state loss. A fence removed
    from the index while a van is inside gets EXIT ``reason=FENCE_REMOVED`` at the
    van's next ping.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from udfs.decision import Decision
from udfs.events import Ping
from udfs.geofence import GeofenceIndex, distance_m

ENTER, EXIT = "ENTER", "EXIT"
# Why an event was emitted.
OBSERVED = "OBSERVED"
SEGMENT_CROSSING = "SEGMENT_CROSSING"
FENCE_REMOVED = "FENCE_REMOVED"
STATE_EXPIRED = "STATE_EXPIRED"

DAY_MS = 86_400_000


@dataclass(frozen=True)
class MembershipConfig:
    # Phone and van GPS in cities is 5-30 m; tower fixes are hundreds of metres.
    max_accuracy_m: float = 75.0
    unknown_accuracy_is_good: bool = True
    # Trackers in power-save mode report every few minutes; 60 s or 500 m between fixes
    # is already enough to drive through a customer-stop fence unseen.
    sparse_gap_ms: int = 60_000
    sparse_gap_m: float = 500.0
    state_ttl_ms: int = 3 * DAY_MS


DEFAULT_CONFIG = MembershipConfig()


@dataclass(frozen=True)
class GeofenceEvent:
    event_id: str
    event_type: str  # ENTER or EXIT
    vehicle_id: str
    geofence_id: str
    kind: str
    event_time_ms: int
    facility_id: str | None
    # ENTER time of the visit this event belongs to, so EXIT carries the dwell start too.
    visit_start_ms: int
    interpolated: bool = False
    reason: str = OBSERVED


@dataclass(frozen=True)
class Member:
    geofence_id: str
    kind: str
    facility_id: str | None
    entered_ms: int
    # First good ping outside the fence itself since the last good ping inside; the EXIT time.
    left_fence_ms: int | None = None


@dataclass(frozen=True)
class Candidate:
    geofence_id: str
    since_ms: int
    pings: int


@dataclass(frozen=True)
class MembershipState:
    vehicle_id: str
    last_event_time_ms: int
    # (lat, lon, event_time_ms) of the newest good ping: one end of a sparse segment.
    last_good: tuple[float, float, int] | None = None
    members: tuple[Member, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    out_of_order_pings: int = 0
    duplicate_pings: int = 0
    expiry_timer_ms: int | None = None


def is_good(ping: Ping, cfg: MembershipConfig = DEFAULT_CONFIG) -> bool:
    """Whether a ping is precise enough to start or end anything (see module docstring)."""
    if ping.source == "CELL":
        return False
    if ping.accuracy_m is None:
        return cfg.unknown_accuracy_is_good
    return ping.accuracy_m <= cfg.max_accuracy_m


def step(state: MembershipState | None, ping: Ping, now_ms: int, index: GeofenceIndex,
         cfg: MembershipConfig = DEFAULT_CONFIG) -> Decision[MembershipState]:
    """Fold one ping into the vehicle's fence memberships.

    ``now_ms`` is not used by the rules: every decision is made in event time so that
    a replay reproduces it. It is accepted to keep the common ``step`` shape.
    """
    t = ping.event_time_ms
    if state is not None:
        if t < state.last_event_time_ms:
            return Decision(replace(state, out_of_order_pings=state.out_of_order_pings + 1))
        if t == state.last_event_time_ms:
            return Decision(replace(state, duplicate_pings=state.duplicate_pings + 1))
    else:
        state = MembershipState(vehicle_id=ping.vehicle_id, last_event_time_ms=t)

    good = is_good(ping, cfg)
    inside, within_buffer = index.lookup_both(ping.lat, ping.lon)
    emits: list[GeofenceEvent] = []
    vid = ping.vehicle_id

    # Fences deleted by a broadcast update: close visits now rather than never.
    members = []
    for m in state.members:
        if m.geofence_id in index:
            members.append(m)
        else:
            emits.append(_event(vid, EXIT, m, t, reason=FENCE_REMOVED))
    candidates = [c for c in state.candidates if c.geofence_id in index]
    member_ids = {m.geofence_id for m in members}
    candidate_ids = {c.geofence_id for c in candidates}

    if good and state.last_good is not None:
        # A fence whose exit buffer holds the new ping is left to the normal rules: the van is
        # at its edge now, so an interpolated visit would be followed by an observed ENTER
        # if the van drives in (a flap), or stand for edge noise if it does not.
        emits.extend(_sparse_crossings(vid, state.last_good, ping, index,
                                       member_ids | candidate_ids | within_buffer, cfg))

    # Members: track when the van left the fence, EXIT once it is clear of the buffer.
    kept_members = []
    for m in members:
        if not good:
            kept_members.append(m)
        elif m.geofence_id in inside:
            kept_members.append(replace(m, left_fence_ms=None) if m.left_fence_ms is not None else m)
        else:
            left_ms = m.left_fence_ms if m.left_fence_ms is not None else t
            if m.geofence_id in within_buffer:
                kept_members.append(replace(m, left_fence_ms=left_ms))
            else:
                emits.append(_event(vid, EXIT, m, left_ms))

    # Candidates: extend, drop, or confirm; good pings may open new ones.
    kept_candidates = []
    for c in candidates:
        if c.geofence_id in inside:
            kept_candidates.append(replace(c, pings=c.pings + 1))
        elif not good:
            kept_candidates.append(c)
    if good:
        for fid in sorted(inside - member_ids - candidate_ids):
            kept_candidates.append(Candidate(fid, since_ms=t, pings=1))
    still_pending = []
    for c in kept_candidates:
        fence = index.get(c.geofence_id)
        if c.geofence_id in inside and (c.pings >= fence.min_pings or t - c.since_ms >= fence.dwell_ms):
            m = Member(fence.geofence_id, fence.kind, fence.facility_id, entered_ms=c.since_ms)
            kept_members.append(m)
            emits.append(_event(vid, ENTER, m, c.since_ms))
        else:
            still_pending.append(c)

    timer_ms = None
    expiry = state.expiry_timer_ms
    if expiry is None:
        expiry = timer_ms = t + cfg.state_ttl_ms
    new_state = replace(
        state,
        last_event_time_ms=t,
        last_good=(ping.lat, ping.lon, t) if good else state.last_good,
        members=tuple(sorted(kept_members, key=lambda m: m.geofence_id)),
        candidates=tuple(sorted(still_pending, key=lambda c: c.geofence_id)),
        expiry_timer_ms=expiry,
    )
    # Stable sort: at equal times an interpolated EXIT stays ahead of a later-listed ENTER.
    emits.sort(key=lambda e: e.event_time_ms)
    return Decision(new_state, tuple(emits), timer_ms=timer_ms)


def on_timer(state: MembershipState | None, timer_ms: int,
             cfg: MembershipConfig = DEFAULT_CONFIG) -> Decision[MembershipState]:
    """Expiry: re-arm if the van pinged since the timer was set, else close and clear."""
    if state is None or timer_ms != state.expiry_timer_ms:
        return Decision(state)
    due_ms = state.last_event_time_ms + cfg.state_ttl_ms
    if timer_ms < due_ms:
        return Decision(replace(state, expiry_timer_ms=due_ms), timer_ms=due_ms)
    exits = tuple(_event(state.vehicle_id, EXIT, m, state.last_event_time_ms, reason=STATE_EXPIRED)
                  for m in state.members)
    return Decision(None, exits)


def _sparse_crossings(vid: str, last_good: tuple[float, float, int], ping: Ping, index: GeofenceIndex,
                      busy: set[str], cfg: MembershipConfig) -> list[GeofenceEvent]:
    lat0, lon0, t0 = last_good
    gap_ms = ping.event_time_ms - t0
    if gap_ms < cfg.sparse_gap_ms and distance_m(lat0, lon0, ping.lat, ping.lon) < cfg.sparse_gap_m:
        return []
    out = []
    for fid, (t_in, t_out) in index.segment_crossings(lat0, lon0, ping.lat, ping.lon).items():
        # An end inside the fence is a real observation and the normal rules own it.
        if fid in busy or t_in <= 0.0 or t_out >= 1.0:
            continue
        fence = index.get(fid)
        enter_ms = t0 + round(t_in * gap_ms)
        exit_ms = max(enter_ms, t0 + round(t_out * gap_ms))
        m = Member(fid, fence.kind, fence.facility_id, entered_ms=enter_ms)
        out.append(_event(vid, ENTER, m, enter_ms, interpolated=True, reason=SEGMENT_CROSSING))
        out.append(_event(vid, EXIT, m, exit_ms, interpolated=True, reason=SEGMENT_CROSSING))
    return out


def _event(vehicle_id: str, event_type: str, m: Member, at_ms: int, *, interpolated: bool = False,
           reason: str = OBSERVED) -> GeofenceEvent:
    return GeofenceEvent(
        event_id=f"{vehicle_id}|{m.geofence_id}|{event_type}|{at_ms}",
        event_type=event_type,
        vehicle_id=vehicle_id,
        geofence_id=m.geofence_id,
        kind=m.kind,
        event_time_ms=at_ms,
        facility_id=m.facility_id,
        visit_start_ms=m.entered_ms,
        interpolated=interpolated,
        reason=reason,
    )
