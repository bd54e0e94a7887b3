"""Drivers that play the operator around the pure per-key rules, for unit tests and benches.

:class:`VehicleRun` stands in for ``jobs.vehicle_tracking.VehicleOperator`` for one van:
it keeps the :class:`udfs.vehicle_state.VehicleState`, the event-time timers the rules
ask for and the processing-time timer, and fires due timers when told the watermark
moved. ``bench/geofence_accuracy.py`` runs one per simulated van over a shared
geofence index, so the bench and the unit tests drive the rules the same way.
"""
from __future__ import annotations

from udfs import vehicle_state as vs
from udfs.alerts import Alert
from udfs.geofence import GeofenceIndex


class VehicleRun:
    """Feeds events in order, keeping the state and the timers like the operator does."""

    def __init__(self, idx: GeofenceIndex, rules: vs.Rules = vs.DEFAULT_RULES):
        self.state, self.rules, self.idx = None, rules, idx
        self.timers, self.ptimer, self.out = set(), None, []

    def _apply(self, o: vs.Outcome):
        self.state = o.state
        self.timers |= set(o.register_ms)
        self.timers -= set(o.delete_ms)
        if o.delete_processing_ms is not None and o.delete_processing_ms == self.ptimer:
            self.ptimer = None
        if o.register_processing_ms is not None:
            self.ptimer = o.register_processing_ms
        self.out.extend(o.emits)
        return o

    def ping(self, p, wall_ms=None):
        return self._apply(vs.on_ping(self.state, p, wall_ms or p.event_time_ms + 1000, self.idx, self.rules))

    def assign(self, a):
        return self._apply(vs.on_assignment(self.state, a, a.event_time_ms + 1000, self.rules))

    def advance_watermark(self, wm_ms):
        """Fire every event-time timer at or before ``wm_ms``, earliest first."""
        while self.state is not None and self.timers and min(self.timers) <= wm_ms:
            t = min(self.timers)
            self.timers.discard(t)
            self._apply(vs.on_timer(self.state, t, wm_ms, self.rules))

    def wall_clock(self, now_ms):
        """Fire the processing-time timer while it is due (it re-arms lazily)."""
        emits = []
        while self.ptimer is not None and self.ptimer <= now_ms:
            fired, self.ptimer = self.ptimer, None
            emits.extend(self._apply(vs.on_processing_timer(self.state, fired, self.rules)).emits)
        return emits

    def alerts(self, typ=None, state=None):
        return [a for a in self.out if isinstance(a, Alert) and (typ is None or a.type == typ)
                and (state is None or a.state == state)]

    def of(self, cls):
        return [e for e in self.out if isinstance(e, cls)]
