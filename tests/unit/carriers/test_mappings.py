import re

import pytest

from fleetflow import contracts
from fleetflow.carrier_mappings import (CARRIERS_DIR, CarrierMappingError, coverage, load_all, load_file,
                                        mapping_files, parse_yaml, to_record, validate_file, validate_mapping)
from tests.builders import T0_MS
from udfs.normalise import apply_mapping_update
from udfs.taxonomy import DETAIL_STATUS, REQUIRED_PAIRS, Status

FILES = mapping_files()
CARRIER_NAMES = [p.stem.upper() for p in FILES]
# Statuses any real parcel carrier reports; PENDING, EXPIRED and CANCELLED are optional.
CORE_STATUSES = {Status.INFO_RECEIVED, Status.IN_TRANSIT, Status.OUT_FOR_DELIVERY, Status.ATTEMPT_FAIL,
                 Status.DELIVERED, Status.AVAILABLE_FOR_PICKUP, Status.EXCEPTION, Status.RETURN_TO_SENDER}


@pytest.fixture(scope="module")
def mappings():
    return load_all()


def test_the_four_launch_carriers_have_files():
    assert {"FEDEX", "UPS", "USPS", "DHL"} <= set(CARRIER_NAMES)


@pytest.mark.parametrize("path", FILES, ids=CARRIER_NAMES)
def test_every_carrier_file_validates(path):
    assert validate_file(path) == []


@pytest.mark.parametrize("carrier", CARRIER_NAMES)
@pytest.mark.parametrize("status, detail", REQUIRED_PAIRS, ids=[f"{s.value}/{d.value}" for s, d in REQUIRED_PAIRS])
def test_every_carrier_has_a_code_for_every_required_pair(mappings, carrier, status, detail):
    assert mappings[carrier].codes_for(status, detail), f"{carrier} cannot express ({status}, {detail})"


@pytest.mark.parametrize("carrier", CARRIER_NAMES)
def test_every_code_maps_to_a_valid_pair(mappings, carrier):
    for raw, code in mappings[carrier].codes.items():
        assert DETAIL_STATUS[code.detail] is code.status, raw
        assert code.text, f"{carrier} {raw} has no carrier wording"


@pytest.mark.parametrize("carrier", CARRIER_NAMES)
def test_every_carrier_covers_the_core_statuses(mappings, carrier):
    report = coverage(mappings[carrier])
    assert CORE_STATUSES <= {Status(s) for s in report["statuses"]}, report["missing_statuses"]
    assert report["pairs"] >= len(REQUIRED_PAIRS) + 5


@pytest.mark.parametrize("carrier", CARRIER_NAMES)
def test_every_carrier_can_express_a_return_reaching_the_sender(mappings, carrier):
    assert any(c.detail.value == "RETURNED" for c in mappings[carrier].codes.values())


@pytest.mark.parametrize("carrier", CARRIER_NAMES)
def test_published_record_is_valid_avro_and_reloads_identically(mappings, carrier):
    record = to_record(mappings[carrier], T0_MS)
    _, decoded = contracts.decode(contracts.encode("carrier_mappings", record), expected="carrier_mappings")
    loaded, err = apply_mapping_update({}, decoded)
    assert err is None
    assert loaded[carrier] == mappings[carrier]


def test_readme_template_is_a_valid_mapping():
    readme = (CARRIERS_DIR / "README.md").read_text()
    template = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    assert validate_mapping(parse_yaml(template)) == []


# ---------------------------------------------------------------- loader guards

def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _template():
    readme = (CARRIERS_DIR / "README.md").read_text()
    return re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)


def test_duplicate_yaml_keys_are_rejected_not_silently_overwritten(tmp_path):
    text = _template().replace('  "PU": {', '  "DL": {status: DELIVERED, detail: DELIVERED_TO_MAILBOX}\n  "PU": {')
    errors = validate_file(_write(tmp_path, "acme.yaml", text))
    assert any("duplicate key 'DL'" in e for e in errors), errors


def test_unquoted_numeric_code_is_rejected(tmp_path):
    text = _template().replace('  "PU": {', '  01: {status: IN_TRANSIT, detail: IN_TRANSIT}\n  "PU": {')
    errors = validate_file(_write(tmp_path, "acme.yaml", text))
    assert any("quote it" in e for e in errors), errors


def test_file_must_be_named_after_its_carrier(tmp_path):
    errors = validate_file(_write(tmp_path, "acme_parcel.yaml", _template()))
    assert any("must be acme.yaml" in e for e in errors)


def test_load_all_reports_every_bad_file_at_once(tmp_path):
    _write(tmp_path, "acme.yaml", _template())
    _write(tmp_path, "zippy.yaml", _template().replace("carrier: ACME", "carrier: ZIPPY").replace("CUSTOMS_HOLD", "NOPE"))
    _write(tmp_path, "broken.yaml", "carrier: [unclosed")
    with pytest.raises(CarrierMappingError) as exc:
        load_all(tmp_path)
    joined = "\n".join(exc.value.errors)
    assert "zippy.yaml" in joined and "broken.yaml" in joined and "acme.yaml" not in joined


def test_adding_a_file_is_all_it_takes(tmp_path):
    _write(tmp_path, "acme.yaml", _template())
    assert set(load_all(tmp_path)) == {"ACME"}
    assert load_file(tmp_path / "acme.yaml").display_name == "Acme Parcel"


# ---------------------------------------------------------------- FleetFlow's own codes

def test_geofence_derived_codes_map_as_the_vehicle_job_needs(mappings):
    fleetflow = mappings["FLEETFLOW"]
    near = fleetflow.lookup("GEO_NEAR_DESTINATION")
    hub = fleetflow.lookup("GEO_ARRIVED_HUB")
    assert (near.status.value, near.detail.value) == ("OUT_FOR_DELIVERY", "NEAR_DESTINATION")
    assert (hub.status.value, hub.detail.value) == ("IN_TRANSIT", "ARRIVED_AT_FACILITY")


def test_geofence_scans_normalise_and_keep_leg_zero(mappings):
    from udfs.events import Scan
    from udfs.normalise import NormalisedScan, normalise

    scan = Scan(event_id="geo|x|TRK1", tracking_id="TRK1", carrier="FLEETFLOW", raw_code="GEO_ARRIVED_HUB",
                raw_text="", event_time_ms=T0_MS, facility_id="HUB-BER-W", leg=0, source="GEOFENCE")
    out = normalise(mappings, scan)
    assert isinstance(out, NormalisedScan)
    assert (out.leg, out.source, out.facility_id) == (0, "GEOFENCE", "HUB-BER-W")
