import pickle

import pytest

from tests.builders import T0_MS, scan
from udfs.events import Scan
from udfs.normalise import (INVALID_MAPPING, MAPPING_VERSION_CONFLICT, STALE_MAPPING_VERSION, UNKNOWN_CARRIER_CODE,
                            CarrierMapping, CodeMapping, NormalisedScan, UnknownCode, apply_custom_fields,
                            apply_mapping_update, normalise, parse_mapping, validate_carrier_mapping)
from udfs.taxonomy import REQUIRED_PAIRS, Detail, Status


def yaml_shaped(carrier="ACME", version=1, extra_codes=None, **overrides):
    """A complete mapping in the YAML file's shape: one code per required pair."""
    codes = {f"C{i:02d}": {"status": s.value, "detail": d.value, "text": f"{s.value} {d.value}"}
             for i, (s, d) in enumerate(REQUIRED_PAIRS)}
    codes.update(extra_codes or {})
    obj = {"carrier": carrier, "display_name": carrier.title(), "version": version, "codes": codes,
           "custom_fields": {"scanLocation": "facility_id"}}
    obj.update(overrides)
    return obj


def avro_shaped(carrier="ACME", version=1, extra_codes=None):
    y = yaml_shaped(carrier, version, extra_codes)
    return {"carrier": carrier, "version": version,
            "codes": [{"raw_code": k, **v} for k, v in y["codes"].items()],
            "field_mappings": y["custom_fields"], "updated_time_ms": T0_MS}


def mapping(carrier="ACME", version=1, extra_codes=None) -> CarrierMapping:
    m, errors = parse_mapping(yaml_shaped(carrier, version, extra_codes))
    assert not errors
    return m


def acme_scan(raw_code, **kw):
    return Scan.from_record(scan(raw_code=raw_code, carrier=kw.pop("carrier", "ACME"), **kw))


# ---------------------------------------------------------------- normalise

def test_known_code_maps_to_status_and_detail_and_keeps_scan_fields():
    m = mapping(extra_codes={"DL": {"status": "DELIVERED", "detail": "DELIVERED_TO_NEIGHBOUR", "text": "With neighbour"}})
    s = acme_scan("DL", at_ms=T0_MS + 5, facility_id="F1", leg=2, source="PARTNER_API", raw_text="")
    out = normalise({"ACME": m}, s)
    assert isinstance(out, NormalisedScan)
    assert (out.status, out.detail) == (Status.DELIVERED, Detail.DELIVERED_TO_NEIGHBOUR)
    assert (out.event_id, out.tracking_id, out.event_time_ms) == (s.event_id, s.tracking_id, T0_MS + 5)
    assert (out.facility_id, out.leg, out.source, out.mapping_version) == ("F1", 2, "PARTNER_API", 1)
    # The carrier's own wording on the scan wins; the mapping's text fills in when it is blank.
    assert out.raw_text == "With neighbour"
    assert normalise({"ACME": m}, acme_scan("DL", raw_text="Left with no. 12")).raw_text == "Left with no. 12"


@pytest.mark.parametrize("raw_code, carrier", [("c00", "ACME"), (" C00 ", "acme"), ("C00", " Acme ")])
def test_codes_and_carriers_match_regardless_of_case_and_whitespace(raw_code, carrier):
    out = normalise({"ACME": mapping()}, acme_scan(raw_code, carrier=carrier))
    assert isinstance(out, NormalisedScan)
    assert (out.status, out.detail) == REQUIRED_PAIRS[0]
    assert out.carrier == "ACME"


@pytest.mark.parametrize("carrier, raw_code, reason, why", [
    ("ACME", "ZZ", UNKNOWN_CARRIER_CODE, "has no code 'ZZ'"),
    ("NOPE", "C00", "UNKNOWN_CARRIER", "no mapping loaded for carrier 'NOPE'"),
])
def test_unknown_carrier_or_code_is_never_silently_mapped(carrier, raw_code, reason, why):
    s = acme_scan(raw_code, carrier=carrier)
    out = normalise({"ACME": mapping()}, s)
    assert isinstance(out, UnknownCode)
    assert out.reason == reason
    assert why in out.detail
    assert out.scan == s


# ---------------------------------------------------------------- parsing and validation

def test_yaml_and_avro_shapes_parse_to_the_same_mapping():
    a, errs_a = parse_mapping(yaml_shaped())
    b, errs_b = parse_mapping(avro_shaped())
    assert not errs_a and not errs_b
    assert a == b
    assert a.custom_fields == {"scanLocation": "facility_id"}


def test_missing_detail_means_the_status_default_detail():
    m = mapping(extra_codes={"X": {"status": "EXCEPTION"}})
    assert m.lookup("x") == CodeMapping("X", Status.EXCEPTION, Detail.OTHER_EXCEPTION, "")


def _with(**changes):
    obj = yaml_shaped()
    obj.update(changes)
    return obj


def _codes_plus(extra):
    obj = yaml_shaped()
    obj["codes"] = {**obj["codes"], **extra}
    return obj


def _codes_without(index):
    obj = yaml_shaped()
    obj["codes"] = {k: v for i, (k, v) in enumerate(obj["codes"].items()) if i != index}
    return obj


@pytest.mark.parametrize("obj, expected_error", [
    (_with(carrier=""), "carrier is missing or empty"),
    (_with(carrier=None), "carrier is missing or empty"),
    (_with(version=0), "version must be a positive integer"),
    (_with(version="2"), "version must be a positive integer"),
    (_with(codes={}), "codes is empty"),
    (_with(codes=None), "codes is missing"),
    (_with(custom_field={}), "unknown key 'custom_field'"),
    (_with(custom_fields={"scanLocation": "location_name"}), "target must be one of"),
    (_codes_plus({"Z1": {"status": "SHIPPED", "detail": "IN_TRANSIT"}}), "unknown status 'SHIPPED'"),
    (_codes_plus({"Z1": {"status": "IN_TRANSIT", "detail": "TELEPORTED"}}), "unknown detail 'TELEPORTED'"),
    (_codes_plus({"Z1": {"status": "IN_TRANSIT", "detail": "DELIVERED"}}),
     "detail DELIVERED belongs to DELIVERED, not IN_TRANSIT"),
    (_codes_plus({"c00": {"status": "IN_TRANSIT", "detail": "IN_TRANSIT"}}), "duplicate code 'c00'"),
    (_codes_plus({1: {"status": "IN_TRANSIT", "detail": "IN_TRANSIT"}}), "quote it in YAML"),
    (_codes_plus({False: {"status": "IN_TRANSIT", "detail": "IN_TRANSIT"}}), "quote it in YAML"),
    (_codes_without(0), "missing required pair (INFO_RECEIVED, LABEL_CREATED)"),
    (_codes_without(len(REQUIRED_PAIRS) - 1), "missing required pair (IN_TRANSIT, HANDOFF_TO_CARRIER)"),
    ("not a mapping", "must be a mapping"),
])
def test_invalid_mappings_are_reported(obj, expected_error):
    m, errors = parse_mapping(obj)
    assert m is None
    assert any(expected_error in e for e in errors), errors


def test_duplicate_codes_in_the_avro_list_are_reported():
    obj = avro_shaped()
    obj["codes"].append(dict(obj["codes"][0]))
    assert any("duplicate code 'C00'" in e for e in parse_mapping(obj)[1])


def test_all_problems_are_reported_at_once():
    obj = _codes_plus({"Z1": {"status": "SHIPPED"}, "Z2": {"status": "IN_TRANSIT", "detail": "NOPE"}})
    obj["carrier"] = ""
    assert len(parse_mapping(obj)[1]) == 3


def test_hand_built_mapping_is_validated_too():
    bad = CarrierMapping("acme", 1, {"C1": CodeMapping("C1", Status.IN_TRANSIT, Detail.DELIVERED)})
    errors = validate_carrier_mapping(bad)
    assert any("upper case" in e for e in errors)
    assert any("belongs to DELIVERED" in e for e in errors)
    assert any("missing required pair" in e for e in errors)
    assert validate_carrier_mapping(mapping()) == []


# ---------------------------------------------------------------- runtime updates (broadcast state)

def test_valid_update_adds_a_carrier_without_touching_the_current_dict():
    current = {"ACME": mapping()}
    new, err = apply_mapping_update(current, avro_shaped("ZIPPY"))
    assert err is None
    assert set(new) == {"ACME", "ZIPPY"}
    assert set(current) == {"ACME"}


def test_invalid_update_is_rejected_and_the_old_mapping_stays():
    current = {"ACME": mapping()}
    bad = avro_shaped(version=2)
    bad["codes"] = bad["codes"][1:]
    new, err = apply_mapping_update(current, bad)
    assert new == current
    assert err.reason == INVALID_MAPPING
    assert (err.carrier, err.version) == ("ACME", 2)
    assert "missing required pair" in str(err)


def test_tombstone_is_rejected_so_a_carrier_cannot_vanish_at_runtime():
    current = {"ACME": mapping()}
    new, err = apply_mapping_update(current, None)
    assert new == current
    assert err.reason == INVALID_MAPPING


def test_higher_version_replaces_and_new_codes_take_effect():
    current = {"ACME": mapping()}
    v2 = avro_shaped(version=2, extra_codes={"NEW": {"status": "DELIVERED", "detail": "DELIVERED_TO_MAILBOX"}})
    assert isinstance(normalise(current, acme_scan("NEW")), UnknownCode)
    new, err = apply_mapping_update(current, v2)
    assert err is None and new["ACME"].version == 2
    assert normalise(new, acme_scan("NEW")).detail is Detail.DELIVERED_TO_MAILBOX


def test_older_version_is_rejected_as_stale():
    current = {"ACME": mapping(version=3)}
    new, err = apply_mapping_update(current, avro_shaped(version=2))
    assert new["ACME"].version == 3
    assert err.reason == STALE_MAPPING_VERSION


def test_replaying_the_same_version_is_a_quiet_no_op():
    current = {"ACME": mapping(version=2)}
    new, err = apply_mapping_update(current, avro_shaped(version=2))
    assert err is None and new == current


def test_same_version_with_different_codes_is_a_conflict():
    current = {"ACME": mapping(version=2)}
    changed = avro_shaped(version=2, extra_codes={"NEW": {"status": "DELIVERED"}})
    new, err = apply_mapping_update(current, changed)
    assert new == current
    assert err.reason == MAPPING_VERSION_CONFLICT


def test_update_can_be_a_carrier_mapping_object():
    new, err = apply_mapping_update({}, mapping("ZIPPY"))
    assert err is None and "ZIPPY" in new


def test_mapping_survives_pickling_for_broadcast_state_and_is_hashable():
    m = mapping()
    assert pickle.loads(pickle.dumps(m)) == m
    assert hash(m) == hash(pickle.loads(pickle.dumps(m)))


def test_reverse_lookup_and_custom_fields():
    m = mapping(extra_codes={"a2": {"status": "INFO_RECEIVED", "detail": "LABEL_CREATED"}})
    assert m.codes_for(Status.INFO_RECEIVED, Detail.LABEL_CREATED) == ("A2", "C00")
    assert apply_custom_fields(m, {"scanLocation": "MEM", "other": 1}) == {"facility_id": "MEM", "other": 1}


def test_onboarding_alert_is_one_alert_per_carrier_and_code():
    from fleetflow import contracts
    from udfs.normalise import carrier_onboarding_alert

    a = normalise({"ACME": mapping()}, acme_scan(" zz ", carrier="acme"))
    b = normalise({"ACME": mapping()}, acme_scan("ZZ", carrier="ACME"))
    c = normalise({"ACME": mapping()}, acme_scan("YY", carrier="ACME"))
    ra, rb, rc = (carrier_onboarding_alert(x, 1, 5) for x in (a, b, c))
    assert ra["alert_id"] == rb["alert_id"] == "CARRIER_ONBOARDING:ACME:ZZ" != rc["alert_id"]
    assert (ra["entity_type"], ra["entity_id"], ra["type"]) == ("CARRIER", "ACME", "CARRIER_ONBOARDING")
    assert ra["details"]["raw_code"] == "ZZ" and ra["details"]["mapping_version"] == "1"
    assert contracts.decode(contracts.encode("alerts", ra))[1]["alert_id"] == ra["alert_id"]
