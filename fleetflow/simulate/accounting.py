"""Does the stack hold what a simulated run says it should? (``fleetflow accounting TRUTH``)

A live run (``simulate --truth T`` to Kafka, or ``replay REC --truth T``) records the
input topics' end offsets in the truth file just before it sends. Everything at or past
those offsets is the run's, so the run can be checked against a stack that already holds
other data:

* **history rows**: one ``shipment_history`` row per valid, unique scan;
* **position rows**: one ``vehicle_positions`` row per valid, unique ping;
* **dead letters**: one per malformed record, counted by *source record* (topic,
  partition, offset). Several jobs read the same topic (the vehicle and the ETA jobs both
  read pings), and each dead-letters what it cannot trust, so ``ff.dead-letters`` holds
  more entries than the simulator injected malformed records; distinct sources match.

Duplicates are the difference between a topic's records and its valid unique ones; they
must leave no row behind, which is what the first two counts check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetflow import topics

DAY_MS = 86_400_000
# Inputs whose malformed records the jobs dead-letter.
SOURCE_TOPICS = (topics.SCANS.name, topics.PINGS.name, topics.PLANS.name, topics.ASSIGNMENTS.name,
                 topics.GEOFENCES.name)
OFFSETS_KEY = "kafka_start_offsets"


@dataclass(frozen=True)
class Counts:
    history_rows: int
    position_rows: int
    dead_letters: int

    def rows(self) -> list[tuple[str, int]]:
        return [("history rows (valid unique scans)", self.history_rows),
                ("position rows (valid unique pings)", self.position_rows),
                ("dead letters (distinct malformed source records)", self.dead_letters)]


def expected(truth: dict[str, Any]) -> Counts:
    valid = truth["counts"]["valid_unique_by_topic"]
    return Counts(valid.get(topics.SCANS.name, 0), valid.get(topics.PINGS.name, 0),
                  truth["counts"]["faults"]["malformed"])


def ping_window_ms(truth: dict[str, Any]) -> tuple[int, int]:
    """Event times the run's pings can have. Van ids repeat from run to run (the fleet is
    the same, only the seed changes), so position rows are counted within this window
    only; runs that overlap in simulated time cannot be told apart."""
    return min(truth["start_ms"], truth["recording_start_ms"]), truth["end_ms"]


def end_offsets(bootstrap: str) -> dict[str, dict[str, int]]:
    """``{topic: {partition: end offset}}`` of the input topics (JSON-friendly keys)."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(t, p) for t in SOURCE_TOPICS for p in (c.partitions_for_topic(t) or ())]
        out: dict[str, dict[str, int]] = {}
        for tp, off in c.end_offsets(parts).items():
            out.setdefault(tp.topic, {})[str(tp.partition)] = off
        return out
    finally:
        c.close()


def run_origins(dead_letters: list[dict[str, Any]], start: dict[str, dict[str, int]]) -> set[tuple[str, int, int]]:
    """Distinct (topic, partition, offset) of dead letters whose source record came at or after ``start``."""
    out = set()
    for dl in dead_letters:
        first = start.get(dl["source_topic"], {}).get(str(dl["source_partition"]))
        if first is not None and dl["source_offset"] >= first:
            out.add((dl["source_topic"], dl["source_partition"], dl["source_offset"]))
    return out


def observe(session, bootstrap: str, truth: dict[str, Any]) -> Counts:
    from fleetflow import contracts
    from fleetflow.kafka_io import read_all

    start = truth.get(OFFSETS_KEY)
    if start is None:
        raise ValueError("the truth file has no Kafka start offsets: it comes from a run that did not send "
                         "to Kafka; use `simulate --truth T` to the stack, or `replay REC --truth T`")
    tracking_ids = sorted({p["tracking_id"] for p in truth["packages"]})
    vehicles = sorted(v["vehicle_id"] for v in truth["vehicles"])
    lo, hi = ping_window_ms(truth)
    history = sum(session.execute("SELECT count(*) FROM shipment_history WHERE tracking_id = %s", (t,)).one()[0]
                  for t in tracking_ids)
    positions = sum(session.execute(
        "SELECT count(*) FROM vehicle_positions WHERE vehicle_id = %s AND day = %s "
        "AND event_time_ms >= %s AND event_time_ms <= %s", (v, d, lo, hi)).one()[0]
        for v in vehicles for d in range(lo // DAY_MS, hi // DAY_MS + 1))
    dead = [contracts.decode(raw)[1] for raw in read_all(bootstrap, topics.DEAD_LETTERS.name)]
    return Counts(history, positions, len(run_origins(dead, start)))
