"""Publish, list and retire geofences on the compacted ``ff.geofences`` topic.

The topic is the only store of geofences: the vehicle job reads it from the start on
every run (broadcast state), so the latest record per ``geofence_id`` is the fence. A
retired fence is a record with ``deleted=true`` (it keeps its id and time, unlike a
Kafka tombstone, so the job can close open visits with ``FENCE_REMOVED``). The CLI
(``fleetflow geofence``) and the API share these functions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from fleetflow import contracts, topics
from udfs.geofence import DEFAULT_DWELL_MS, DEFAULT_EXIT_BUFFER_M, DEFAULT_MIN_PINGS, KINDS, Geofence, GeofenceError

TOPIC = topics.GEOFENCES


def parse_circle(text: str) -> tuple[float, float, float]:
    """``"lat,lon,radius_m"`` → floats, or GeofenceError saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise GeofenceError(f"--circle wants lat,lon,radius_m (three numbers), got {text!r}")
    try:
        lat, lon, radius_m = (float(p) for p in parts)
    except ValueError:
        raise GeofenceError(f"--circle wants numbers: lat,lon,radius_m, got {text!r}") from None
    return lat, lon, radius_m


def read_geojson(path: str | Path) -> dict[str, Any]:
    """A GeoJSON geometry, Feature, or FeatureCollection with exactly one feature."""
    try:
        obj = json.loads(Path(path).read_text())
    except OSError as exc:
        raise GeofenceError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise GeofenceError(f"{path} is not JSON: {exc}") from None
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features") or []
        if len(features) != 1:
            raise GeofenceError(f"{path}: a FeatureCollection must hold exactly one feature, it holds {len(features)}")
        obj = features[0]
    if not isinstance(obj, dict):
        raise GeofenceError(f"{path}: expected a GeoJSON object")
    return obj


def build_record(geofence_id: str, kind: str, *, wkt: str | None = None, geojson: Mapping[str, Any] | None = None,
                 circle: tuple[float, float, float] | None = None, name: str = "", dwell_ms: int = DEFAULT_DWELL_MS,
                 min_pings: int = DEFAULT_MIN_PINGS, exit_buffer_m: float = DEFAULT_EXIT_BUFFER_M,
                 facility_id: str | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """A validated ``avro/geofences.avsc`` record; GeofenceError with the reason otherwise.

    Exactly one of ``wkt``, ``geojson`` and ``circle`` (lat, lon, radius_m). GeoJSON is
    stored as WKT: the topic carries polygons as WKT or circles.
    """
    if sum(x is not None for x in (wkt, geojson, circle)) != 1:
        raise GeofenceError("give exactly one of a WKT polygon, a GeoJSON file or a circle")
    if kind not in KINDS:
        raise GeofenceError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    knobs = dict(dwell_ms=int(dwell_ms), min_pings=int(min_pings), exit_buffer_m=float(exit_buffer_m),
                 facility_id=facility_id or None)
    if circle is not None:
        fence = Geofence.circle(geofence_id, kind, *circle, **knobs)
    elif geojson is not None:
        fence = Geofence.polygon(geofence_id, kind, geojson=dict(geojson), **knobs)
    else:
        fence = Geofence.polygon(geofence_id, kind, wkt=wkt, **knobs)
    return {
        "geofence_id": fence.geofence_id,
        "name": name or "",
        "kind": fence.kind,
        "polygon_wkt": fence.polygon_wkt,
        "circle": None if not fence.is_circle else {"lat": fence.center_lat, "lon": fence.center_lon,
                                                    "radius_m": fence.radius_m},
        "dwell_ms": fence.dwell_ms,
        "min_pings": fence.min_pings,
        "exit_buffer_m": fence.exit_buffer_m,
        "facility_id": fence.facility_id,
        "deleted": False,
        "updated_time_ms": int(time.time() * 1000) if now_ms is None else now_ms,
    }


def retired(record: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """The ``deleted=true`` record that retires ``record``'s fence."""
    out = dict(record)
    out.update(deleted=True, updated_time_ms=int(time.time() * 1000) if now_ms is None else now_ms)
    return out


def latest(records: Iterable[Mapping[str, Any]], *, include_deleted: bool = False) -> dict[str, dict[str, Any]]:
    """Latest record per id in topic order (the topic has one partition), without retired ones."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out[r["geofence_id"]] = dict(r)
    if not include_deleted:
        out = {k: v for k, v in out.items() if not v.get("deleted")}
    return dict(sorted(out.items()))


def read_records(bootstrap: str) -> list[dict[str, Any]]:
    """Every decodable record on the topic, in order; undecodable ones are skipped."""
    from fleetflow.kafka_io import read_all
    out = []
    for raw in read_all(bootstrap, TOPIC.name):
        if raw is None:
            continue
        try:
            _, record = contracts.decode(raw, expected=TOPIC.schema)
        except contracts.ContractError:
            continue
        out.append(record)
    return out


def publish(bootstrap: str, record: Mapping[str, Any]) -> None:
    """Send one record keyed by its id (compaction keeps the latest per id)."""
    from fleetflow.kafka_io import publish_encoded
    publish_encoded(bootstrap, TOPIC.name, [(record["geofence_id"].encode(), contracts.encode(TOPIC.schema,
                                                                                             dict(record)))])


def add(bootstrap: str, record: Mapping[str, Any]) -> dict[str, Any]:
    publish(bootstrap, record)
    return dict(record)


def remove(bootstrap: str, geofence_id: str, now_ms: int | None = None) -> dict[str, Any]:
    """Retire a live fence; GeofenceError when there is none with that id."""
    current = latest(read_records(bootstrap)).get(geofence_id)
    if current is None:
        raise GeofenceError(f"no geofence {geofence_id!r} on {TOPIC.name}")
    record = retired(current, now_ms)
    publish(bootstrap, record)
    return record


def list_live(bootstrap: str) -> list[dict[str, Any]]:
    return list(latest(read_records(bootstrap)).values())
