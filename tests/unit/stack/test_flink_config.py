"""The Flink config the local stack writes: flink-conf/config.yaml plus local addresses and ports."""
from __future__ import annotations

import yaml

from fleetflow.settings import ROOT, StackSettings
from fleetflow.stack.services import flink_config


def _base_reporter_ports() -> str:
    return yaml.safe_load((ROOT / "flink-conf" / "config.yaml").read_text())["metrics"]["reporter"]["prom"]["port"]


def test_metrics_reporter_keeps_the_cluster_port_range_by_default(monkeypatch):
    monkeypatch.delenv("FLEETFLOW_FLINK_METRICS_PORTS", raising=False)
    conf = flink_config(StackSettings())
    assert conf["metrics"]["reporter"]["prom"]["port"] == _base_reporter_ports()


def test_a_second_stack_moves_every_configured_port(monkeypatch, tmp_path):
    for name, value in {"FLINK_METRICS_PORTS": "19249-19260", "FLINK_REST_PORT": "18081",
                        "FLINK_RPC_PORT": "16123", "HOME_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(f"FLEETFLOW_{name}", value)
    conf = flink_config(StackSettings())
    assert conf["metrics"]["reporter"]["prom"]["port"] == "19249-19260"
    # The rest of the reporter's settings still come from the cluster config.
    assert conf["metrics"]["reporter"]["prom"]["factory"]["class"].endswith("PrometheusReporterFactory")
    assert conf["rest"]["port"] == 18081 and conf["jobmanager"]["rpc"]["port"] == 16123
    assert str(tmp_path) in conf["io"]["tmp"]["dirs"]
