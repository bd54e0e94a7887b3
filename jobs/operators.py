"""Thin Flink adapters around the Decision-shaped rules in ``udfs/``.

``DecisionOperator`` is the only keyed operator FleetFlow needs: it loads the key's
state, calls the rule, stores or clears the state, registers or deletes event-time
timers and yields the emits. No business rule lives here.
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.decision import Decision

Step = Callable[[Any, Any, int], Decision]
OnTimer = Callable[[Any, int], Decision]


class EmitGroup(tuple):
    """All emits of one input element (or one timer), sent downstream as one element.

    A writer that receives the group can issue every write at once and wait once, instead
    of one round trip per emit; the group is still acknowledged as a whole before the
    writer returns, so checkpoint barriers keep covering only acknowledged writes.
    """

    __slots__ = ()


class DecisionOperator(KeyedProcessFunction):
    """Runs ``step(state, event, now_ms)`` per element and ``on_timer(state, timer_ms)`` per timer.

    State: one pickled value per key (whatever the rule keeps). It is cleared when the
    rule returns ``Decision.state is None``; each rule's docstring says when that is.
    ``now_ms`` is processing time: event time travels inside the events.

    ``ttl_ms`` (optional) puts a Flink state TTL on that value as a backstop for timers
    that never fire: refreshed on create and write, expired values never returned.

    ``group_emits`` (optional) yields one ``EmitGroup`` per element or timer that emits
    anything, instead of each emit on its own; downstream operators then see groups.
    """

    def __init__(self, step: Step, on_timer: OnTimer | None = None, state_name: str = "rule-state",
                 ttl_ms: int | None = None, group_emits: bool = False):
        self._step = step
        self._group_emits = group_emits
        self._on_timer = on_timer
        self._state_name = state_name
        self._ttl_ms = ttl_ms
        self._state = None

    def open(self, runtime_context: RuntimeContext):
        descriptor = ValueStateDescriptor(self._state_name, Types.PICKLED_BYTE_ARRAY())
        if self._ttl_ms is not None:
            from jobs.state_ttl import ttl_config
            descriptor.enable_time_to_live(ttl_config(self._ttl_ms))
        self._state = runtime_context.get_state(descriptor)

    def _load(self):
        raw = self._state.value()
        return None if raw is None else pickle.loads(raw)

    def _apply(self, d: Decision, ctx) -> tuple:
        if d.state is None:
            self._state.clear()
        else:
            self._state.update(pickle.dumps(d.state, protocol=pickle.HIGHEST_PROTOCOL))
        timers = ctx.timer_service()
        for t in d.cancel_timers_ms:
            timers.delete_event_time_timer(t)
        if d.timer_ms is not None:
            timers.register_event_time_timer(d.timer_ms)
        return d.emits

    def _out(self, emits: tuple):
        if not self._group_emits:
            return emits
        return (EmitGroup(emits),) if emits else ()

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        now_ms = ctx.timer_service().current_processing_time()
        yield from self._out(self._apply(self._step(self._load(), value, now_ms), ctx))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if self._on_timer is None:
            return
        state = self._load()
        yield from self._out(self._apply(self._on_timer(state, timestamp), ctx))
