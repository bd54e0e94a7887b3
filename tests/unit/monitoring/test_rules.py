"""Alert rules fire on the series they are meant for and stay quiet otherwise (promtool),
and every metric the rules and the dashboard read is one FleetFlow or Flink really emits."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fleetflow import topics
from fleetflow.flinkjobs import JOBS

ROOT = Path(__file__).resolve().parents[3]
MON = ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (fleetflow setup installs it)")

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "increase", "irate", "deriv", "delta",
    "histogram_quantile", "label_replace", "absent", "and", "or", "unless", "on", "ignoring", "group_left",
    "group_right", "time", "bool", "topk", "bottomk", "clamp_min", "clamp_max", "offset", "humanizePercentage",
}


def rules():
    return yaml.safe_load((MON / "alerts.rules.yml").read_text())


def all_rules():
    return [r for g in rules()["groups"] for r in g["rules"]]


def catalogue():
    return yaml.safe_load((MON / "metrics.yml").read_text())["metrics"]


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"<[^>]+>", "[A-Za-z0-9_]+", re.escape(name).replace(r"\<", "<")
                                   .replace(r"\>", ">")) + "$")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (names in __name__ regexes expanded by alternation)."""
    names = set()
    for m in re.finditer(r'__name__=~"([^"]+)"', expr):
        regex = m.group(1)
        alts = re.match(r"^(.*)\(([^()]*)\)(.*)$", regex)
        if alts and "|" in alts.group(2):
            names |= {alts.group(1) + a + alts.group(3) for a in alts.group(2).split("|")}
        else:
            names.add(regex.replace(".+", "<X>"))
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    for tok in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        word = tok.group(0)
        after = stripped[tok.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        names.add(word)
    return names


def known(name: str) -> dict | None:
    for entry, source in catalogue().items():
        if entry == name or _pattern(entry).match(name.replace("<X>", "X")):
            return source
    return None


def dashboard_exprs():
    dash = json.loads((MON / "grafana" / "fleetflow.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


@needs_promtool
def test_promtool_accepts_the_rules_and_the_local_config():
    for argv in (["check", "rules", str(MON / "alerts.rules.yml")], ["check", "config", str(MON / "prometheus.yml")]):
        out = subprocess.run([PROMTOOL, *argv], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_each_alert_fires_on_its_series_and_not_on_the_quiet_ones():
    out = subprocess.run([PROMTOOL, "test", "rules", str(MON / "tests" / "alerts.test.yml")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_exercised_firing_and_quiet_by_the_promtool_tests():
    tests = yaml.safe_load((MON / "tests" / "alerts.test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {r["alert"] for r in all_rules() if "alert" in r}
    assert alerts == fired == quiet


def test_the_required_alerts_exist():
    alerts = {r["alert"] for r in all_rules() if "alert" in r}
    assert {"FleetFlowApiErrorRateHigh", "FleetFlowConsumerLagRising", "FleetFlowCheckpointsFailing",
            "FleetFlowDeadLetterRateHigh", "FleetFlowNoEventsReceived"} <= alerts
    for r in all_rules():
        if "alert" in r:
            assert r["labels"]["severity"] in ("page", "warning") and r["annotations"]["summary"], r["alert"]


def test_metric_name_extraction():
    assert metric_names('sum by (job_name) (rate(x_total{status=~"5.."}[5m])) / sum(rate(x_total[5m]))') == {"x_total"}
    assert metric_names('rate(label_replace({__name__=~"p_(a|b)_in"}, "s", "$1", "__name__", "p_(.+)_in")[5m:1m])') \
        == {"p_a_in", "p_b_in"}


def test_rules_read_only_metrics_that_exist():
    for r in all_rules():
        for name in metric_names(r["expr"]):
            source = known(name)
            assert source is not None, f"{r.get('alert') or r.get('record')}: {name} is not in monitoring/metrics.yml"
            assert "proposed" not in source, f"{name} is not emitted yet; alerts must not depend on it"


def test_dashboard_panels_read_known_metrics():
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    for title, expr in exprs:
        for name in metric_names(expr):
            assert known(name) is not None, f"panel {title!r}: {name} is not in monitoring/metrics.yml"


def test_dashboard_covers_the_agreed_views():
    text = " ".join(e for _, e in dashboard_exprs())
    for needle in ("fleetflow:events_in:rate5m", "fleetflow:dead_letters:rate5m", "alert_type_passed", "late_events",
                   "lastCheckpointDuration", "fleetflow:consumer_lag:records",
                   "fleetflow_api_request_duration_seconds_bucket"):
        assert needle in text, needle
    dash = json.loads((MON / "grafana" / "fleetflow.json").read_text())
    assert dash["uid"] and len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])


def test_catalogued_code_metrics_are_still_emitted():
    for name, source in catalogue().items():
        if "code" in source:
            assert source["needle"] in (ROOT / source["code"]).read_text(), f"{name}: not found in {source['code']}"
        elif "rule" in source:
            assert name in {r.get("record") for r in all_rules()}, name


def test_events_in_rule_covers_every_consumed_schema():
    rec = next(r for r in all_rules() if r.get("record") == "fleetflow:events_in:rate5m")
    covered = {n.removeprefix("flink_taskmanager_job_task_operator_").removesuffix("_in")
               for n in metric_names(rec["expr"])}
    consumed = {t.schema for t in topics.ALL if t.schema and t.schema != "dead_letters"}
    assert consumed <= covered, f"schemas whose <schema>_in is not counted: {sorted(consumed - covered)}"


def test_job_presence_alert_names_every_job():
    expr = next(r["expr"] for r in all_rules() if r.get("alert") == "FleetFlowJobNotRunning")
    named = set(re.findall(r'job_name="([^"]+)"', expr))
    assert named == {name.replace("-", "_") for name in JOBS}


def test_kubernetes_scrape_config_keeps_the_ports_the_manifests_name():
    cfg = yaml.safe_load((MON / "prometheus-kubernetes.yml").read_text())
    keeps = {j["job_name"]: [r["regex"] for r in j["relabel_configs"]
                             if r.get("action") == "keep" and "container_port_name" in r["source_labels"][0]]
             for j in cfg["scrape_configs"]}
    assert keeps == {"flink": ["metrics"], "fleetflow-api": ["http"]}
    manifests = " ".join(p.read_text() for p in (ROOT / "k8s").rglob("*.yaml"))
    assert "name: metrics\n              containerPort: 9249" in manifests
    assert "name: http\n              containerPort: 8000" in manifests
