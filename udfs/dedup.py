"""Drop repeated deliveries of the same event, keyed by the event's source identity.

Carriers retry webhooks, partners resend files and Kafka producers retry after a
timeout, so the same event arrives more than once. The first arrival wins and is
emitted unchanged; a later arrival with the same key and the same content is dropped.

**The key is the source identity, not the bare event id** (``dedup_key``). Producers
choose their own event ids: two carriers, a carrier and our facility scanners, or two
vans' trackers can all send ``evt-1``. Keyed by the bare id, the second of them was
dropped as a "duplicate" with no trace. Per topic:

* ``scans``: ``(carrier, event_id)``, the carrier folded as admission folds it
  (``udfs.normalise.carrier_key``: ``fedex`` and `` FEDEX`` are one source);
* ``pings``: ``(vehicle_id, event_id)``: each van's tracker numbers its own fixes;
* ``assignments``: ``(vehicle_id, event_id)``: loads and unloads are reported per van
  (the topic's Kafka key), by its driver app or the dispatcher acting for it;
* ``shipment_states``: ``(tracking_id, version)``, which is ``ShipmentView.event_id``
  (``<tracking_id>#<version>``) and so the key this topic always had. The record's own
  ``event_id`` names the scan that *caused* the change and is not unique per record.

The two parts are joined with ``KEY_SEPARATOR`` (U+001F, a control character). The
shared id checks (``udfs.validation.id_value_problem``) refuse control characters in
every event id, so splitting a key at its *last* separator gives the pair back whatever
the source part holds (a vehicle_id is id-checked too; a carrier is only length-checked,
and the shipment job admits any carrier name), and no key can equal a bare event id
from before the change. Ids can contain ``|``, ``:`` or ``#``, so none of those would do.

**Same key, different content is not a duplicate** (``step``). Each arrival carries a
content hash of its decoded record (``content_hash``). A later arrival whose hash
differs from the first one's is emitted as a ``Conflict``, which the operator turns into
a dead letter with reason ``EVENT_ID_CONFLICT`` (the API's name for the same thing,
api/routes/events.py) and the arrival's original bytes: the first arrival still wins,
and the other one is kept where it can be inspected and replayed. Nothing is excluded
from the hash: the simulator's duplicate fault re-sends the same bytes, and the API
calls an event the same only when its encoded record is byte-identical. Only the
carrier is compared folded (it is part of the key, so ``fedex``/``FEDEX`` must not make
a resend a conflict), and the record is compared decoded, so a resend written with
another (compatible) writer schema is still the same content.

State per key: a ``DedupState`` holding when the key was first seen, when the state
expires and the first arrival's content hash. It is cleared by the event-time timer at
``expires_at_ms``. Neither a duplicate nor a conflict extends the TTL, so a key whose
twin keeps arriving is still bounded; a twin arriving more than ``ttl_ms`` after the
first is emitted again.

**Upgrading from a savepoint taken before the key change.** The operator uids and the
state name (``dedup``) are unchanged, so the savepoint restores, but its entries are
keyed by bare ``event_id`` and the new keys never reach them: they are not read again
and are cleared by their own timers within ``ttl_ms`` (24 h). Until then, a resend of an
event first seen *before* the upgrade passes the dedup stage once more. That is
harmless because everything downstream is idempotent for an exact resend:

* scans: the lifecycle rule remembers each shipment's last 64 event ids and ignores a
  repeat; an older repeat comes back as a late history row, and ``shipment_history`` is
  an upsert on ``(tracking_id, event_time_ms, event_id)``;
* pings: the vehicle and ETA rules ignore a ping no newer than the van's last one, and
  ``vehicle_positions`` is an upsert on ``(vehicle_id, day, event_time_ms, event_id)``;
* assignments: the van rules keep loaded parcels by tracking id and ignore an
  assignment no newer than the route's last;
* shipment states keep their old key (see above), so their old state is still reached.

Old ``DedupState`` values (no ``content_hash``) still unpickle: the field defaults to
None, and a state without a hash treats every later arrival as a duplicate (it cannot
tell a conflict), which is what the stage did before.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from udfs.decision import Decision
from udfs.normalise import carrier_key

# Comfortably longer than carrier webhook retry windows (hours) and partner file resend cycles (daily).
DEFAULT_DEDUP_TTL_MS = 24 * 3_600_000

# The dead letter reason of a same-key arrival with other content (as the API names it).
EVENT_ID_CONFLICT = "EVENT_ID_CONFLICT"
# Unit separator: a control character, which the shared id checks refuse in every id.
KEY_SEPARATOR = "\x1f"

# Topic -> the field naming the event's producer; the key is (that field, event_id).
SOURCE_FIELD = {"scans": "carrier", "pings": "vehicle_id", "assignments": "vehicle_id"}
# Topics whose key is the record's own identity rather than (producer, event_id).
_OWN_IDENTITY = frozenset({"shipment_states"})
DEDUP_TOPICS = frozenset(SOURCE_FIELD) | _OWN_IDENTITY


def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name)


def _source(topic: str, item: Any) -> str:
    value = _get(item, SOURCE_FIELD[topic])
    return carrier_key(value) if topic == "scans" else value


def dedup_key(topic: str, item: Any) -> str:
    """The dedup key of one valid event of ``topic`` (a record dict or its view).

    ``<source>\\x1f<event_id>`` for scans (folded carrier), pings and assignments
    (vehicle_id); ``<tracking_id>#<version>`` for shipment states. Raises ValueError
    for a topic this stage does not know, so a new topic needs a decision.
    """
    if topic in SOURCE_FIELD:
        return f"{_source(topic, item)}{KEY_SEPARATOR}{_get(item, 'event_id')}"
    if topic == "shipment_states":
        return f"{_get(item, 'tracking_id')}#{int(_get(item, 'version'))}"
    raise ValueError(f"no dedup key for topic {topic!r}; known: {sorted(DEDUP_TOPICS)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"cannot hash a {type(value).__name__}")


def content_hash(topic: str, record: Mapping[str, Any]) -> str:
    """A stable hash of a decoded record (same content, same hash, in every process).

    Canonical JSON (sorted keys) of the record, the scan's carrier folded; BLAKE2b-128.
    """
    if topic == "scans" and isinstance(record.get("carrier"), str):
        record = {**record, "carrier": carrier_key(record["carrier"])}
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Arrival:
    """One valid event on its way into the dedup stage.

    ``event`` is what leaves the stage when it passes (the job's view of the record);
    ``original`` and the origin fields are for the dead letter if it conflicts.
    """
    key: str
    content_hash: str
    event: Any
    original: bytes
    source_topic: str
    source_partition: int = -1
    source_offset: int = -1

    @property
    def event_time_ms(self) -> int:
        return int(self.event.event_time_ms)


@dataclass(frozen=True)
class Conflict:
    """``arrival`` has the key of an event already let through, with other content."""
    arrival: Arrival
    first_content_hash: str
    reason: str = EVENT_ID_CONFLICT

    @property
    def detail(self) -> str:
        source, _, event_id = self.arrival.key.rpartition(KEY_SEPARATOR)
        who = f"event_id {event_id!r} from {source!r}" if source else f"event {event_id!r}"
        return (f"{who} was already accepted with different content "
                f"(first {self.first_content_hash}, this {self.arrival.content_hash})")


@dataclass(frozen=True)
class DedupState:
    first_event_time_ms: int
    expires_at_ms: int
    # None in state written before content hashes existed: every repeat counts as a duplicate.
    content_hash: str | None = None


def _event_time_ms(event: Any) -> int:
    if isinstance(event, Mapping):
        return int(event["event_time_ms"])
    return int(event.event_time_ms)


def step(state: DedupState | None, event: Any, now_ms: int,
         ttl_ms: int = DEFAULT_DEDUP_TTL_MS) -> Decision[DedupState]:
    """One arrival for one key. ``event`` is an ``Arrival`` (what the jobs send), or a bare
    record dict or view with ``event_time_ms`` (no content known: repeats are duplicates).

    Emits exactly one of: the event (first arrival: ``arrival.event``), a ``Conflict``
    (same key, other content), or nothing (a duplicate).
    """
    arrival = event if isinstance(event, Arrival) else None
    incoming_hash = arrival.content_hash if arrival is not None else None
    if state is not None:
        if state.content_hash is None or incoming_hash is None or incoming_hash == state.content_hash:
            return Decision(state)
        return Decision(state, emits=(Conflict(arrival, state.content_hash),))
    event_time_ms = _event_time_ms(event)
    # now_ms may still be at its initial minimum or may be ahead of a late event;
    # anchoring on the later of the two keeps the state alive for a full ttl in both
    # cases instead of firing the expiry timer at once.
    expires_at_ms = max(now_ms, event_time_ms) + ttl_ms
    out = arrival.event if arrival is not None else event
    return Decision(DedupState(event_time_ms, expires_at_ms, incoming_hash), emits=(out,), timer_ms=expires_at_ms)


def on_timer(state: DedupState | None, timer_ms: int) -> Decision[DedupState]:
    if state is None or timer_ms >= state.expires_at_ms:
        return Decision(None)
    # A timer from an earlier incarnation of this key (it expired, then the id came back).
    return Decision(state)
