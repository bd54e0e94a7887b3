"""fleetflow.geofences and `fleetflow geofence`: records, validation, latest-per-id, CLI."""
import json

import pytest

from fleetflow import contracts, geofences
from fleetflow.cli.main import main as cli_main
from tests.builders import T0_MS, square_wkt
from udfs.geofence import GeofenceError, GeofenceIndex

SQUARE = square_wkt(52.52, 13.405, 100.0)


def test_circle_record_is_valid_avro_and_indexable():
    rec = geofences.build_record("GF1", "DEPOT", circle=(52.52, 13.405, 150.0), name="Mitte", facility_id="DEP-1",
                                 now_ms=T0_MS)
    assert rec["circle"] == {"lat": 52.52, "lon": 13.405, "radius_m": 150.0} and rec["polygon_wkt"] is None
    _, back = contracts.decode(contracts.encode("geofences", rec))
    assert back == rec
    assert GeofenceIndex().apply_record(back) is None


def test_geojson_feature_collection_is_stored_as_wkt(tmp_path):
    path = tmp_path / "fence.geojson"
    ring = [[13.40, 52.52], [13.41, 52.52], [13.41, 52.53], [13.40, 52.53], [13.40, 52.52]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    rec = geofences.build_record("GF2", "HUB", geojson=geofences.read_geojson(path), now_ms=T0_MS)
    assert rec["polygon_wkt"].startswith("POLYGON") and rec["circle"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(wkt="POLYGON((13 52, 13.1 52.1, 13.1 52, 13 52.1, 13 52))"), "invalid polygon"),
    (dict(wkt="POLYGON((13 52, 13.1"), "unreadable WKT"),
    (dict(wkt="LINESTRING(13 52, 13.1 52.1)"), "Polygon"),
    (dict(circle=(95.0, 13.4, 50.0)), "outside the supported lat/lon range"),
    (dict(circle=(52.5, 13.4, 0.0)), "radius_m > 0"),
    (dict(circle=(52.5, 13.4, 50.0), wkt=SQUARE), "exactly one"),
    (dict(circle=(52.5, 13.4, 50.0), min_pings=0), "min_pings >= 1"),
])
def test_invalid_fences_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(GeofenceError, match=message):
        geofences.build_record("GF", "CUSTOMER_STOP", **kwargs)


def test_unknown_kind_and_bad_circle_text_are_refused():
    with pytest.raises(GeofenceError, match="kind must be one of"):
        geofences.build_record("GF", "PARKING", wkt=SQUARE)
    with pytest.raises(GeofenceError, match="three numbers"):
        geofences.parse_circle("52.5,13.4")
    with pytest.raises(GeofenceError, match="numbers"):
        geofences.parse_circle("52.5,east,10")
    assert geofences.parse_circle(" 52.5, 13.4 ,80 ") == (52.5, 13.4, 80.0)


def test_latest_keeps_the_last_record_per_id_and_drops_retired_ones():
    a1 = geofences.build_record("A", "HUB", wkt=SQUARE, now_ms=1)
    a2 = geofences.build_record("A", "HUB", circle=(52.5, 13.4, 90.0), now_ms=2)
    b = geofences.build_record("B", "DEPOT", wkt=SQUARE, now_ms=3)
    c = geofences.build_record("C", "DEPOT", wkt=SQUARE, now_ms=4)
    live = geofences.latest([a1, b, a2, c, geofences.retired(b, now_ms=5)])
    assert list(live) == ["A", "C"] and live["A"]["circle"]["radius_m"] == 90.0
    assert geofences.latest([b, geofences.retired(b, 5), b]).keys() == {"B"}


@pytest.fixture
def fake_topic(monkeypatch):
    """The compacted topic as a list; the CLI's Kafka calls go to it."""
    topic = []
    monkeypatch.setattr(geofences, "publish", lambda bootstrap, record: topic.append(
        contracts.decode(contracts.encode("geofences", dict(record)))[1]))
    monkeypatch.setattr(geofences, "read_records", lambda bootstrap: list(topic))
    return topic


def test_cli_add_list_rm(fake_topic, capsys):
    assert cli_main(["geofence", "add", "STOP-1", "--kind", "CUSTOMER_STOP", "--circle", "52.52,13.405,60",
                     "--facility-id", "STP-1", "--dwell-s", "60"]) == 0
    assert cli_main(["geofence", "add", "HUB-1", "--kind", "HUB", "--wkt", SQUARE]) == 0
    assert fake_topic[0]["dwell_ms"] == 60_000 and fake_topic[0]["facility_id"] == "STP-1"
    capsys.readouterr()
    assert cli_main(["geofence", "list", "--json"]) == 0
    assert [f["geofence_id"] for f in json.loads(capsys.readouterr().out)] == ["HUB-1", "STOP-1"]
    assert cli_main(["geofence", "rm", "STOP-1"]) == 0
    assert fake_topic[-1]["deleted"] is True and fake_topic[-1]["kind"] == "CUSTOMER_STOP"
    capsys.readouterr()
    assert cli_main(["geofence", "list", "--json"]) == 0
    assert [f["geofence_id"] for f in json.loads(capsys.readouterr().out)] == ["HUB-1"]


def test_cli_refuses_bad_input_without_publishing(fake_topic, capsys):
    assert cli_main(["geofence", "add", "X", "--kind", "HUB", "--circle", "91,13,50"]) == 1
    assert cli_main(["geofence", "rm", "NOPE"]) == 1
    assert fake_topic == []
    assert "outside the supported" in capsys.readouterr().out
