"""The one shape every stateful rule in FleetFlow has.

A rule is ``step(state, event, now_ms) -> Decision`` plus, where it uses timers,
``on_timer(state, timer_ms) -> Decision``. The Flink operator in ``jobs/`` stores
``Decision.state`` (``None`` clears it), registers ``timer_ms`` if set, and emits
``Decision.emits`` in order. Keeping rules in this shape lets them be tested in
microseconds without a Flink runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class Decision(Generic[S]):
    state: S | None
    emits: tuple[Any, ...] = field(default_factory=tuple)
    # Event-time timer to register; None registers nothing.
    timer_ms: int | None = None
    # Timers the operator should delete (e.g. a stuck timer superseded by a new status).
    cancel_timers_ms: tuple[int, ...] = field(default_factory=tuple)
