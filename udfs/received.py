"""A scan as it came off Kafka, for the operators between validation and normalisation."""
from __future__ import annotations

from dataclasses import dataclass

from udfs.events import Scan


@dataclass(frozen=True)
class ReceivedScan:
    """A valid scan with the bytes and origin it came with, so a dead letter raised after
    validation (an unknown carrier code) still carries the record exactly as received.
    Not in the job module: stream elements are pickled by class path, and the job module
    runs as ``__main__`` when submitted."""
    scan: Scan
    original: bytes
    topic: str
    partition: int
    offset: int

    @property
    def event_id(self) -> str:
        return self.scan.event_id

    @property
    def event_time_ms(self) -> int:
        return self.scan.event_time_ms
