"""Where generated records go: a replayable JSONL recording, a truth file, or Kafka.

Recording format, one JSON object per line, in produce order::

    {"offset_ms": 1234, "topic": "ff.pings", "key": "VAN-W-001", "value": "<base64 of the Kafka value>"}

``offset_ms`` is the simulated produce time minus the first record's (the truth file
keeps that instant as ``recording_start_ms``). ``key`` is null for unkeyed records.
Values are exactly the bytes a producer would send, including malformed ones.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from fleetflow.simulate.faults import Outgoing


@dataclass(frozen=True)
class Recorded:
    offset_ms: int
    topic: str
    key: str | None
    value: bytes


def recording_line(offset_ms: int, topic: str, key: str | None, value: bytes) -> str:
    return json.dumps({"offset_ms": offset_ms, "topic": topic, "key": key,
                       "value": base64.b64encode(value).decode("ascii")}, separators=(",", ":"))


def write_recording(path: str | os.PathLike, records: list[Outgoing]) -> int:
    base_ms = records[0].produce_ms if records else 0
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(recording_line(r.produce_ms - base_ms, r.topic, r.key, r.value))
            f.write("\n")
    # Readers never see a half-written recording.
    os.replace(tmp, path)
    return len(records)


def read_recording(path: str | os.PathLike) -> Iterator[Recorded]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield Recorded(int(obj["offset_ms"]), str(obj["topic"]), obj.get("key"),
                               base64.b64decode(obj["value"], validate=True))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a recording line: {exc}") from exc


def write_truth(path: str | os.PathLike, truth: dict[str, Any]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(truth, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_truth(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class Pacer:
    """Holds a steady ``rate_eps``, or follows recorded offsets ``speedup`` times faster than real time.

    With ``speedup``, records before ``anchor_offset_ms`` (the backlog: plans and the
    night's hub scans before the shift) go out at once and the rest on schedule, so with
    ``--start-ms now --speedup 1`` event times track the wall clock. Neither set: no
    pacing. Sleeps against the schedule rather than per record, so a slow send is caught
    up instead of accumulating drift.
    """

    def __init__(self, rate_eps: float = 0.0, speedup: float = 0.0, anchor_offset_ms: int = 0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate_eps < 0 or speedup < 0:
            raise ValueError("rate_eps and speedup must be >= 0")
        self.rate_eps, self.speedup, self.anchor_offset_ms = rate_eps, speedup, anchor_offset_ms
        self.clock, self.sleep = clock, sleep
        self.t0 = clock()

    def wait(self, index: int, offset_ms: int) -> None:
        if self.rate_eps > 0:
            due = self.t0 + index / self.rate_eps
        elif self.speedup > 0:
            due = self.t0 + (offset_ms - self.anchor_offset_ms) / 1000 / self.speedup
        else:
            return
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)


class KafkaSink:
    """kafka-python producer with acks=all and idempotence (see fleetflow.kafka_io); raises on close
    if any send failed, so a run never reports records the broker did not take."""

    def __init__(self, bootstrap: str):
        from fleetflow.kafka_io import producer
        self._producer = producer(bootstrap)
        self.sent = 0
        self.errors: list[str] = []

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        future = self._producer.send(topic, key=None if key is None else key.encode("utf-8"), value=value)
        future.add_errback(lambda exc: self.errors.append(f"{topic}: {exc}"))
        self.sent += 1

    def close(self) -> None:
        try:
            self._producer.flush()
        finally:
            self._producer.close()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} of {self.sent} sends failed; first: {self.errors[0]}")


def send_all(sink: KafkaSink, items: Iterable[Recorded], total: int, pacer: Pacer, show_progress: bool,
             label: str = "sending") -> int:
    """Send ``items`` in order through ``sink``, paced; returns how many were handed to the producer."""
    n = 0
    with progress(show_progress, total, label) as advance:
        for n, item in enumerate(items, start=1):
            pacer.wait(n - 1, item.offset_ms)
            sink.send(item.topic, item.key, item.value)
            advance(1)
    sink.close()
    return n


def outgoing_as_recorded(records: list[Outgoing]) -> Iterator[Recorded]:
    base_ms = records[0].produce_ms if records else 0
    for r in records:
        yield Recorded(r.produce_ms - base_ms, r.topic, r.key, r.value)


class _NoProgress:
    def __enter__(self):
        return lambda k: None

    def __exit__(self, *exc):
        return False


class _RichProgress:
    def __init__(self, total: int, label: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           console=Console(stderr=True))
        self._total, self._label = total, label
        self._pending = 0
        # Redrawing per record would cost more than sending it; ~200 redraws per run is smooth enough.
        self._every = max(1, total // 200)

    def __enter__(self):
        self._p.__enter__()
        task = self._p.add_task(self._label, total=self._total)

        def advance(k: int) -> None:
            self._pending += k
            if self._pending >= self._every:
                self._p.advance(task, self._pending)
                self._pending = 0

        self._task = task
        return advance

    def __exit__(self, *exc):
        self._p.advance(self._task, self._pending)
        return self._p.__exit__(*exc)


def progress(enabled: bool, total: int, label: str):
    """Context manager yielding ``advance(k)``; a no-op unless enabled."""
    return _RichProgress(total, label) if enabled and total > 0 else _NoProgress()


def progress_wanted(flag: bool | None) -> bool:
    """Explicit flag wins; otherwise only when a person is watching stderr."""
    return sys.stderr.isatty() if flag is None else flag
