"""Load and check the alert routing table (``fleetflow/alert_routing.yaml``).

The alerts job loads it once at start (``load``), or takes an override from its
JobConfig (``from_override``: ``{"path": ...}`` or an inline ``{"default", "rules"}``).
Every problem is reported at once, as ``where: message``, so a bad deployment config
fails the job at submit time with a readable list instead of misrouting pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from udfs.alerts import DEFAULT_ROUTE, SEVERITIES, Alert, RoutingRule, route

PACKAGE_FILE = "alert_routing.yaml"
RULE_KEYS = ("route_to", "type", "min_severity", "entity_type", "entity_prefix")
CRITERIA = RULE_KEYS[1:]
TOP_KEYS = ("default", "rules")


class AlertRoutingError(ValueError):
    """The routing table is invalid. ``errors`` lists every problem as ``where: message``."""

    def __init__(self, source: str, errors: list[str]):
        super().__init__(f"invalid alert routing in {source}:\n  " + "\n  ".join(errors))
        self.source = source
        self.errors = errors


@dataclass(frozen=True)
class Routing:
    default: str = DEFAULT_ROUTE
    rules: tuple[RoutingRule, ...] = ()

    def route(self, alert: Alert) -> str:
        return route(alert, self.rules, self.default)


def _nonblank(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def problems(obj: Any) -> list[str]:
    """Every problem with a parsed routing table; empty when it is usable."""
    if not isinstance(obj, Mapping):
        return [f"top level: expected a mapping with {', '.join(TOP_KEYS)}, got {type(obj).__name__}"]
    errors = [f"top level: unknown key {k!r} (allowed: {', '.join(TOP_KEYS)})" for k in obj if k not in TOP_KEYS]
    if "default" in obj and not _nonblank(obj["default"]):
        errors.append("default: must be a non-empty string")
    rules = obj.get("rules", [])
    if not isinstance(rules, list):
        return errors + [f"rules: expected a list, got {type(rules).__name__}"]
    catch_all_at = None
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(r, Mapping):
            errors.append(f"{where}: expected a mapping, got {type(r).__name__}")
            continue
        errors += [f"{where}: unknown key {k!r} (allowed: {', '.join(RULE_KEYS)})" for k in r if k not in RULE_KEYS]
        if not _nonblank(r.get("route_to")):
            errors.append(f"{where}: route_to must be a non-empty string")
        for k in CRITERIA:
            if k in r and not _nonblank(r[k]):
                errors.append(f"{where}: {k} must be a non-empty string (omit it to match anything)")
        sev = r.get("min_severity")
        if _nonblank(sev) and sev not in SEVERITIES:
            errors.append(f"{where}: min_severity {sev!r} not one of {', '.join(SEVERITIES)}")
        # A rule after a match-everything rule can never fire: almost surely a misordering.
        if catch_all_at is not None:
            errors.append(f"{where}: unreachable, rules[{catch_all_at}] above it matches every alert")
        elif not any(k in r for k in CRITERIA):
            catch_all_at = i
    return errors


def parse(obj: Any, source: str = "<config>") -> Routing:
    errors = problems(obj)
    if errors:
        raise AlertRoutingError(source, errors)
    return Routing(default=obj.get("default", DEFAULT_ROUTE),
                   rules=tuple(RoutingRule.from_dict(r) for r in obj.get("rules", [])))


def parse_yaml(text: str, source: str = "<yaml>") -> Routing:
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AlertRoutingError(source, [f"not valid YAML: {exc}"]) from exc
    return parse({} if obj is None else obj, source)


def load(path: str | Path | None = None) -> Routing:
    """The routing table at ``path``, or the one shipped with FleetFlow."""
    if path is None:
        return parse_yaml(resources.files("fleetflow").joinpath(PACKAGE_FILE).read_text(), PACKAGE_FILE)
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise AlertRoutingError(str(p), [f"cannot read: {exc.strerror or exc}"]) from exc
    return parse_yaml(text, str(p))


def from_override(override: Mapping[str, Any] | None) -> Routing:
    """The job's routing: ``rules["routing"]`` from JobConfig if given, else the shipped file."""
    if not override:
        return load()
    if "path" in override:
        extra = sorted(set(override) - {"path"})
        if extra:
            raise AlertRoutingError("rules.routing", [f"'path' cannot be combined with {', '.join(extra)}"])
        return load(override["path"])
    return parse(override, "rules.routing")
