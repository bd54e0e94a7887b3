"""Where the local stack lives and how to reach it.

Every value can be overridden with a FLEETFLOW_* environment variable, so the same
code talks to the loopback stack, a CI stack on other ports, or a real cluster.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FLEETFLOW_{name}", default)


@dataclass(frozen=True)
class StackSettings:
    home: Path = field(default_factory=lambda: Path(_env("HOME_DIR", str(ROOT / ".fleetflow"))))
    host: str = field(default_factory=lambda: _env("HOST", "127.0.0.1"))
    kafka_port: int = field(default_factory=lambda: int(_env("KAFKA_PORT", "9092")))
    kafka_controller_port: int = field(default_factory=lambda: int(_env("KAFKA_CONTROLLER_PORT", "9093")))
    cassandra_port: int = field(default_factory=lambda: int(_env("CASSANDRA_PORT", "9042")))
    cassandra_storage_port: int = field(default_factory=lambda: int(_env("CASSANDRA_STORAGE_PORT", "7000")))
    cassandra_jmx_port: int = field(default_factory=lambda: int(_env("CASSANDRA_JMX_PORT", "7199")))
    redis_port: int = field(default_factory=lambda: int(_env("REDIS_PORT", "6379")))
    flink_rest_port: int = field(default_factory=lambda: int(_env("FLINK_REST_PORT", "8081")))
    flink_rpc_port: int = field(default_factory=lambda: int(_env("FLINK_RPC_PORT", "6123")))
    api_port: int = field(default_factory=lambda: int(_env("API_PORT", "8000")))
    # Port range of the Flink Prometheus reporter (JobManager first, then TaskManagers), e.g.
    # "19249-19260" for a second stack on the same host; empty keeps flink-conf/config.yaml's.
    flink_metrics_ports: str = field(default_factory=lambda: _env("FLINK_METRICS_PORTS", ""))
    keyspace: str = field(default_factory=lambda: _env("KEYSPACE", "fleetflow"))
    # One per job: in thread mode each TaskManager runs its jobs' Python in one embedded
    # interpreter, so jobs sharing a TaskManager share one GIL (one core at most).
    taskmanagers: int = field(default_factory=lambda: int(_env("TASKMANAGERS", "4")))
    # Heaps are capped so Kafka + Cassandra + Flink + the tests fit in 2 cores / 24 GB.
    kafka_heap: str = field(default_factory=lambda: _env("KAFKA_HEAP", "512m"))
    cassandra_heap: str = field(default_factory=lambda: _env("CASSANDRA_HEAP", "1G"))
    start_timeout_s: float = field(default_factory=lambda: float(_env("START_TIMEOUT_S", "180")))
    # On a cluster each service has its own address; empty means "host:port" as above.
    kafka_bootstrap_override: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP", ""))
    cassandra_host_override: str = field(default_factory=lambda: _env("CASSANDRA_HOST", ""))
    redis_url_override: str = field(default_factory=lambda: _env("REDIS_URL", ""))
    # Cassandra login (k8s: from a Secret); empty means no authentication, as on loopback.
    cassandra_username: str = field(default_factory=lambda: _env("CASSANDRA_USERNAME", ""))
    cassandra_password: str = field(default_factory=lambda: _env("CASSANDRA_PASSWORD", ""), repr=False)

    @property
    def jars(self) -> Path:
        return self.home / "jars"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or f"{self.host}:{self.kafka_port}"

    @property
    def cassandra_host(self) -> str:
        return self.cassandra_host_override or self.host

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.host}:{self.flink_rest_port}"

    @property
    def redis_url(self) -> str:
        return self.redis_url_override or f"redis://{self.host}:{self.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"


def load() -> StackSettings:
    return StackSettings()
