"""Loading and checking the alert routing table (fleetflow/alert_routing.py)."""
import pytest

from fleetflow import alert_routing
from fleetflow.alert_routing import AlertRoutingError, from_override, load, parse, parse_yaml
from udfs.alerts import Alert


def a(type_="VEHICLE_STALLED", severity="WARNING", entity_type="VEHICLE", entity_id="VAN-HAM-1"):
    return Alert(alert_id="x", type=type_, severity=severity, entity_type=entity_type, entity_id=entity_id,
                 event_time_ms=1, detected_time_ms=1)


def test_shipped_table_loads_and_routes_by_first_match():
    r = load()
    assert r.default == "ops"
    assert r.route(a("RESTRICTED_AREA", "CRITICAL")) == "security"
    assert r.route(a("VEHICLE_STALLED", "CRITICAL")) == "dispatch-oncall"
    assert r.route(a("VEHICLE_STALLED", "WARNING")) == "dispatch"
    assert r.route(a("LATE_RISK", entity_type="PACKAGE", entity_id="TRK1")) == "customer-care"
    assert r.route(a("SOMETHING_NEW", entity_type="ROUTE", entity_id="RT1")) == "ops"


def test_inline_table_with_every_criterion():
    r = parse({"default": "noc", "rules": [
        {"route_to": "ham", "entity_prefix": "VAN-HAM-", "min_severity": "WARNING", "type": "VEHICLE_STALLED",
         "entity_type": "VEHICLE"}]})
    assert r.route(a()) == "ham"
    assert r.route(a(severity="INFO")) == "noc"
    assert r.route(a(entity_id="VAN-BER-1")) == "noc"


def test_empty_table_routes_everything_to_the_built_in_default():
    assert parse_yaml("").route(a()) == "ops"


def test_every_problem_is_reported_at_once_with_its_place():
    with pytest.raises(AlertRoutingError) as e:
        parse({"default": "", "rule": [], "rules": [
            {"type": "X"},
            {"route_to": "a", "min_severity": "PANIC", "colour": "red"},
            "not a rule",
            {"route_to": "b", "entity_type": None},
        ]})
    errors = e.value.errors
    assert "default: must be a non-empty string" in errors
    assert any(m.startswith("top level: unknown key 'rule'") for m in errors)
    assert "rules[0]: route_to must be a non-empty string" in errors
    assert any(m.startswith("rules[1]: min_severity 'PANIC'") for m in errors)
    assert any(m.startswith("rules[1]: unknown key 'colour'") for m in errors)
    assert "rules[2]: expected a mapping, got str" in errors
    assert any(m.startswith("rules[3]: entity_type must be a non-empty string") for m in errors)
    assert len(errors) == 7


def test_rule_after_a_catch_all_is_unreachable():
    with pytest.raises(AlertRoutingError, match=r"rules\[1\]: unreachable, rules\[0\] above it matches every alert"):
        parse({"rules": [{"route_to": "everyone"}, {"route_to": "sec", "type": "RESTRICTED_AREA"}]})


def test_catch_all_as_last_rule_is_fine():
    r = parse({"rules": [{"route_to": "sec", "type": "RESTRICTED_AREA"}, {"route_to": "everyone"}]})
    assert r.route(a()) == "everyone"


@pytest.mark.parametrize("obj, message", [([], "top level: expected a mapping"),
                                          ({"rules": {"route_to": "x"}}, "rules: expected a list")])
def test_wrong_shapes_are_named(obj, message):
    with pytest.raises(AlertRoutingError, match=message):
        parse(obj)


def test_bad_yaml_and_missing_file_name_their_source(tmp_path):
    bad = tmp_path / "routing.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(AlertRoutingError, match="not valid YAML") as e:
        load(bad)
    assert e.value.source == str(bad)
    with pytest.raises(AlertRoutingError, match="cannot read"):
        load(tmp_path / "absent.yaml")


def test_override_by_path_inline_or_none(tmp_path):
    p = tmp_path / "routing.yaml"
    p.write_text("default: night-shift\n")
    assert from_override({"path": str(p)}).default == "night-shift"
    assert from_override({"default": "inline"}).default == "inline"
    assert from_override(None) == load()
    with pytest.raises(AlertRoutingError, match="'path' cannot be combined with rules"):
        from_override({"path": str(p), "rules": []})


def test_shipped_file_is_found_through_the_package():
    assert (alert_routing.resources.files("fleetflow") / alert_routing.PACKAGE_FILE).is_file()
