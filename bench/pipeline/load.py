"""Rate-held replay of a simulated fleet into Kafka, and end-to-end latency probes.

The recording comes from the simulator (pings, scans, plans, assignments with its usual
faults), generated once in memory so that its event times sit just behind the wall
clock: validation accepts them and the jobs' watermarks move as they would live.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fleetflow import contracts, topics
from fleetflow.simulate.carriers import raw_code
from fleetflow.simulate.config import SimConfig
from fleetflow.simulate.engine import generate

INPUT_TOPICS = {topics.PINGS.name, topics.SCANS.name, topics.PLANS.name, topics.ASSIGNMENTS.name}


def recording(vans: int, hours: float, seed: int) -> tuple[list[tuple[str, bytes | None, bytes, int]], int]:
    """[(topic, key, value, event_time_ms)] in produce order, and the recording's start_ms."""
    duration_s = hours * 3600
    start_ms = int(time.time() * 1000) - int(duration_s * 1000) - 3_600_000
    sim = generate(SimConfig(seed=seed, vans=vans, duration_s=duration_s, start_ms=start_ms))
    out = []
    for r in sim.records:
        if r.topic in INPUT_TOPICS:
            out.append((r.topic, r.key.encode() if r.key else None, r.value, r.produce_ms))
    return out, start_ms


@dataclass
class SendStats:
    sent: int = 0
    seconds: float = 0.0
    last_event_ms: int = 0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class RateSender:
    """Sends the recording at a held rate, in 10 ms ticks, from where it left off."""

    def __init__(self, bootstrap: str, records):
        from kafka import KafkaProducer
        # acks=1 and large batches: the generator must not be the bottleneck on 2 cores.
        self._p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024,
                                buffer_memory=256 * 1024 * 1024, max_request_size=4 * 1024 * 1024)
        self._records = records
        self._i = 0
        self.last_event_ms = 0

    @property
    def remaining(self) -> int:
        return len(self._records) - self._i

    def run(self, rate_eps: float, seconds: float, stop: threading.Event | None = None,
            limit: int | None = None) -> SendStats:
        tick = 0.01
        per_tick = rate_eps * tick
        owed = 0.0
        t0 = time.monotonic()
        next_tick = t0
        sent = 0
        end = len(self._records) if limit is None else min(len(self._records), self._i + limit)
        while time.monotonic() - t0 < seconds and self._i < end:
            if stop is not None and stop.is_set():
                break
            owed += per_tick
            n = int(owed)
            owed -= n
            for _ in range(n):
                if self._i >= end:
                    break
                topic, key, value, ev_ms = self._records[self._i]
                self._p.send(topic, key=key, value=value)
                self.last_event_ms = ev_ms
                self._i += 1
                sent += 1
            next_tick += tick
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._p.flush()
        return SendStats(sent, time.monotonic() - t0, self.last_event_ms)

    def close(self) -> None:
        self._p.close()


@dataclass
class ProbeResult:
    latencies_ms: list[float] = field(default_factory=list)
    timeouts: int = 0


class Prober:
    """Every ``interval_s``: a scan for a new tracking id, timed until it is queryable.

    Its event time is the event time the load has reached, so probes neither push the
    watermark ahead of the load nor arrive late behind it. ``visible(tracking_id)`` says
    whether the new state can be read (through the API, or Redis when asked).
    """

    def __init__(self, bootstrap: str, visible, sender: RateSender, run_id: str, interval_s: float = 0.25,
                 timeout_s: float = 30.0):
        from kafka import KafkaProducer
        self._p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
        self._visible = visible
        self._sender = sender
        self._run_id = run_id
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._code = raw_code("FEDEX", ("INFO_RECEIVED", "LABEL_CREATED")).code
        self._n = 0

    def run(self, seconds: float, result: ProbeResult, stop: threading.Event) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            started = time.monotonic()
            self._n += 1
            tid = f"PROBE-{self._run_id}-{self._n:06d}"
            ev_ms = self._sender.last_event_ms or int(time.time() * 1000)
            value = contracts.encode("scans", {
                "event_id": f"probe-{tid}", "tracking_id": tid, "carrier": "FEDEX", "raw_code": self._code,
                "raw_text": "", "event_time_ms": ev_ms, "facility_id": None, "location": None,
                "vehicle_id": None, "leg": 1, "source": "CARRIER"})
            t0 = time.perf_counter()
            self._p.send(topics.SCANS.name, key=tid.encode(), value=value)
            self._p.flush()
            deadline = t0 + self._timeout_s
            while True:
                if self._visible(tid):
                    result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() > deadline or stop.is_set():
                    result.timeouts += 1
                    break
                time.sleep(0.005)
            rest = self._interval_s - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def close(self) -> None:
        self._p.close()
