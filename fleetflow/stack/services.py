"""The four services of the local stack: how each is configured, started and probed.

Each service answers four questions: which ports it needs, how to write its config
under ``.fleetflow/``, the argv that starts it in the foreground (we daemonise it
ourselves, see process.py), and a real readiness probe (a Kafka metadata request, a
CQL SELECT, a Redis PING, Flink REST /overview), not just an open port.
"""
from __future__ import annotations

import json
import shutil
import urllib.request
import uuid
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import yaml

from fleetflow.settings import ROOT, StackSettings
from fleetflow.stack.process import Daemon, StackError
from jobs.runtime import python_path

# Cassandra 5 on JDK 17: the module openings from its jvm17-server.options.
CASSANDRA_JDK17_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    *[f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.base/jdk.internal.ref", "java.base/sun.nio.ch",
        "java.management.rmi/com.sun.jmx.remote.internal.rmi", "java.rmi/sun.rmi.registry",
        "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref", "jdk.unsupported/sun.misc",
    )],
    *[f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
        "java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal", "java.base/sun.nio.ch",
        "java.base/java.io", "java.base/java.nio", "java.base/java.util.concurrent", "java.base/java.util",
        "java.base/java.util.concurrent.atomic", "java.base/java.lang", "java.base/java.math",
        "java.base/java.lang.reflect", "java.base/java.net", "java.base/java.nio.channels.spi",
    )],
]


def java_bin() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found on PATH: install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)")
    return java


def _jar_dir(s: StackSettings, part: str) -> Path:
    d = s.jars / part
    if not d.is_dir() or not any(d.glob("*.jar")):
        raise StackError(f"no jars in {d}: run `fleetflow setup` (fetches them with Maven from pom.xml)")
    return d


@dataclass
class Service:
    name: str
    s: StackSettings

    @property
    def daemon(self) -> Daemon:
        return Daemon(self.name, self.s.run / f"{self.name}.pid", self.s.logs / f"{self.name}.log", self.signature)

    signature: ClassVar[tuple[str, ...]] = ()

    def ports(self) -> list[int]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config and do first-start initialisation. Idempotent."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError


class Kafka(Service):
    signature = ("kafka.Kafka",)

    @property
    def conf(self) -> Path:
        return self.s.home / "conf" / "kafka" / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.s.data / "kafka"

    def ports(self) -> list[int]:
        return [self.s.kafka_port, self.s.kafka_controller_port]

    def _classpath(self) -> str:
        return str(_jar_dir(self.s, "kafka") / "*")

    def prepare(self) -> None:
        s = self.s
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.data_dir}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Single node: consumer groups should not wait for more members.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]))
        log4j = self.conf.parent / "log4j2.yaml"
        log4j.write_text(_LOG4J2_CONSOLE)
        if not (self.data_dir / "meta.properties").exists():
            import subprocess
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cluster_id = _kafka_cluster_id()
            out = subprocess.run(
                [java_bin(), "-cp", self._classpath(), f"-Dlog4j2.configurationFile={log4j}",
                 "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.conf)],
                capture_output=True, text=True)
            if out.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {out.stdout}{out.stderr}")

    def argv(self) -> list[str]:
        return [java_bin(), f"-Xms{self.s.kafka_heap}", f"-Xmx{self.s.kafka_heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={self.conf.parent / 'log4j2.yaml'}",
                "-cp", self._classpath(), "kafka.Kafka", str(self.conf)]

    def ready(self) -> bool:
        from kafka import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=self.s.kafka_bootstrap, request_timeout_ms=3000,
                                 api_version_auto_timeout_ms=3000)
        try:
            return bool(admin.describe_cluster().get("brokers"))
        finally:
            admin.close()


def _kafka_cluster_id() -> str:
    # Kafka wants a base64 UUID; derive it once and keep it with the data.
    import base64
    raw = uuid.uuid4().bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_LOG4J2_CONSOLE = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "%d{ISO8601} %-5p [%c{1}] %m%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


class Cassandra(Service):
    signature = ("org.apache.cassandra.service.CassandraDaemon",)

    @property
    def conf_dir(self) -> Path:
        return self.s.home / "conf" / "cassandra"

    @property
    def data_dir(self) -> Path:
        return self.s.data / "cassandra"

    def ports(self) -> list[int]:
        return [self.s.cassandra_port, self.s.cassandra_storage_port, self.s.cassandra_jmx_port]

    def prepare(self) -> None:
        s, d = self.s, self.data_dir
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        conf = {
            "cluster_name": "fleetflow-local",
            "num_tokens": 16,
            "allocate_tokens_for_local_replication_factor": 1,
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "data_file_directories": [str(d / "data")],
            "commitlog_directory": str(d / "commitlog"),
            "saved_caches_directory": str(d / "saved_caches"),
            "hints_directory": str(d / "hints"),
            "cdc_raw_directory": str(d / "cdc_raw"),
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "10000ms",
            "seed_provider": [{"class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                               "parameters": [{"seeds": f"{s.host}:{s.cassandra_storage_port}"}]}],
            "listen_address": s.host,
            "rpc_address": s.host,
            "storage_port": s.cassandra_storage_port,
            "native_transport_port": s.cassandra_port,
            "start_native_transport": True,
            "endpoint_snitch": "SimpleSnitch",
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
            # Small machine: fewer threads and a small memtable keep CPU for Flink.
            "concurrent_reads": 8,
            "concurrent_writes": 16,
            "concurrent_counter_writes": 8,
            "memtable_heap_space": "128MiB",
            "disk_access_mode": "mmap_index_only",
        }
        (self.conf_dir / "cassandra.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
        (self.conf_dir / "logback.xml").write_text(_CASSANDRA_LOGBACK)

    def argv(self) -> list[str]:
        jars = _jar_dir(self.s, "cassandra")
        jamm = next(iter(sorted(jars.glob("jamm-*.jar"))), None)
        if jamm is None:
            raise StackError(f"jamm agent jar missing from {jars}: rerun `fleetflow setup`")
        return [
            java_bin(), f"-Xms{self.s.cassandra_heap}", f"-Xmx{self.s.cassandra_heap}", "-XX:+UseG1GC",
            "-XX:+PerfDisableSharedMem", f"-javaagent:{jamm}", *CASSANDRA_JDK17_FLAGS,
            f"-Dcassandra.config=file://{self.conf_dir / 'cassandra.yaml'}",
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.s.logs}",
            f"-Dcassandra.jmx.local.port={self.s.cassandra_jmx_port}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=1000",
            "-cp", f"{self.conf_dir}:{jars}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def ready(self) -> bool:
        from fleetflow.cassandra_session import connect
        cluster, session = connect(self.s, keyspace=None, timeout_s=3)
        try:
            return session.execute("SELECT release_version FROM system.local").one() is not None
        finally:
            cluster.shutdown()


_CASSANDRA_LOGBACK = """<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} %-5level [%thread] %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


class Redis(Service):
    signature = ("redis-server",)

    def ports(self) -> list[int]:
        return [self.s.redis_port]

    def prepare(self) -> None:
        (self.s.data / "redis").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found: run `fleetflow setup` (installs Debian's redis-server)")
        return [binary, "--bind", self.s.host, "--port", str(self.s.redis_port),
                "--dir", str(self.s.data / "redis"), "--daemonize", "no", "--save", "60 1000",
                "--appendonly", "no", "--protected-mode", "no"]

    def ready(self) -> bool:
        import redis
        return bool(redis.Redis.from_url(self.s.redis_url, socket_timeout=2).ping())


def pyflink_home() -> Path:
    import pyflink
    return Path(pyflink.__file__).resolve().parent


def flink_conf_dir(s: StackSettings) -> Path:
    return s.home / "conf" / "flink"


def flink_lib_dir(s: StackSettings) -> Path:
    return s.home / "flink-lib"


def flink_plugins_dir(s: StackSettings) -> Path:
    return s.home / "flink-plugins"


# Plugins the cluster loads, from PyFlink's own plugins/ (each gets its own classloader).
# Only what config.yaml uses: every extra plugin is scanned at every JVM start.
FLINK_PLUGINS = ("metrics-prometheus",)


def flink_state_dirs(s: StackSettings) -> tuple[str, str]:
    """(checkpoint dir, savepoint dir) URIs for the local cluster; env vars may point elsewhere (s3://…)."""
    import os
    return (os.environ.get("FLEETFLOW_FLINK_CHECKPOINT_DIR", f"file://{s.data / 'flink-checkpoints'}"),
            os.environ.get("FLEETFLOW_FLINK_SAVEPOINT_DIR", f"file://{s.data / 'flink-savepoints'}"))


def prepare_flink(s: StackSettings) -> None:
    """Lay out FLINK_CONF_DIR, FLINK_LIB_DIR and FLINK_PLUGINS_DIR for the session cluster and the CLI.

    The lib dir is PyFlink's own lib plus flink-python and the Kafka connector, so the
    cluster has the connector on its classpath and jobs need not ship it. The plugins dir
    holds the Prometheus reporter, which PyFlink ships under plugins/ but not in lib/
    (reporters are loaded only as plugins, in their own classloader). RocksDB is part of
    flink-dist and needs nothing here.
    """
    home = pyflink_home()
    conf_dir, lib_dir, plugins_dir = flink_conf_dir(s), flink_lib_dir(s), flink_plugins_dir(s)
    conf_dir.mkdir(parents=True, exist_ok=True)
    lib_dir.mkdir(parents=True, exist_ok=True)
    for old in lib_dir.iterdir():
        old.unlink()
    jars = list((home / "lib").glob("*.jar")) + list((home / "opt").glob("flink-python*.jar"))
    jars += list(_jar_dir(s, "flink").glob("*.jar"))
    for jar in jars:
        (lib_dir / jar.name).symlink_to(jar)
    if plugins_dir.exists():
        shutil.rmtree(plugins_dir)
    for plugin in FLINK_PLUGINS:
        src = home / "plugins" / plugin
        if not any(src.glob("*.jar")):
            raise StackError(f"Flink plugin {plugin} missing from {src}: reinstall apache-flink "
                             f"(pip install -c constraints.txt -e .)")
        (plugins_dir / plugin).mkdir(parents=True)
        for jar in src.glob("*.jar"):
            (plugins_dir / plugin / jar.name).symlink_to(jar)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties", "log4j-session.properties",
                 "logback.xml", "logback-console.xml"):
        src = home / "conf" / name
        if src.exists():
            shutil.copy(src, conf_dir / name)
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(flink_config(s), sort_keys=False))


def flink_config(s: StackSettings) -> dict:
    """flink-conf/config.yaml with the local stack's addresses, ports and directories."""
    import sys
    base = yaml.safe_load((ROOT / "flink-conf" / "config.yaml").read_text()) or {}
    checkpoint_dir, savepoint_dir = flink_state_dirs(s)
    local = {
        "jobmanager": {"rpc": {"address": s.host, "port": s.flink_rpc_port}, "bind-host": s.host},
        # Several small TaskManagers instead of one big one (settings.taskmanagers): two
        # slots each, so every job can run at parallelism 2 and the balancer gives each
        # job its own TaskManager, hence its own interpreter and GIL.
        "taskmanager": {"host": s.host, "bind-host": s.host, "numberOfTaskSlots": 2,
                        "memory": {"process": {"size": "2560m"}}},
        "rest": {"address": s.host, "bind-address": s.host, "port": s.flink_rest_port},
        "python": {"executable": sys.executable, "client": {"executable": sys.executable},
                   "pythonpath": python_path()},
        "env": {"log": {"dir": str(s.logs)}, "pid": {"dir": str(s.run)}},
        "io": {"tmp": {"dirs": str(s.data / "flink-tmp")}},
        "execution": {"checkpointing": {"dir": checkpoint_dir, "savepoint-dir": savepoint_dir}},
        # RocksDB's working files (not checkpoints): local disk, recreated on restore.
        "state": {"backend": {"rocksdb": {"localdir": str(s.data / "flink-rocksdb")}}},
    }
    if s.flink_metrics_ports:
        # A second stack on the same host must not take ports from the first one's range.
        local["metrics"] = {"reporter": {"prom": {"port": s.flink_metrics_ports}}}
    return _deep_merge(base, local)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def flink_env(s: StackSettings) -> dict[str, str]:
    return {"FLINK_CONF_DIR": str(flink_conf_dir(s)), "FLINK_LIB_DIR": str(flink_lib_dir(s)),
            "FLINK_PLUGINS_DIR": str(flink_plugins_dir(s)), "FLINK_LOG_DIR": str(s.logs), "FLINK_PID_DIR": str(s.run)}


class FlinkJobManager(Service):
    signature = ("StandaloneSessionClusterEntrypoint", "jobmanager.sh", "flink-console.sh standalonesession")

    def ports(self) -> list[int]:
        return [self.s.flink_rest_port, self.s.flink_rpc_port]

    def prepare(self) -> None:
        prepare_flink(self.s)
        (self.s.data / "flink-tmp").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return ["bash", str(pyflink_home() / "bin" / "jobmanager.sh"), "start-foreground"]

    def env(self) -> dict[str, str]:
        return flink_env(self.s)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.s.flink_rest_url}/overview", timeout=3) as r:
            return "flink-version" in json.loads(r.read())


class FlinkTaskManager(Service):
    """The n-th TaskManager of the local session cluster (``flink-taskmanager``,
    ``flink-taskmanager-2``, ...); its own JVM, so its own Python interpreter."""
    signature = ("TaskManagerRunner", "taskmanager.sh", "flink-console.sh taskexecutor")

    @property
    def ordinal(self) -> int:
        head, _, tail = self.name.rpartition("-")
        return int(tail) if head == "flink-taskmanager" and tail.isdigit() else 1

    def ports(self) -> list[int]:
        return []

    def argv(self) -> list[str]:
        return ["bash", str(pyflink_home() / "bin" / "taskmanager.sh"), "start-foreground"]

    def env(self) -> dict[str, str]:
        return flink_env(self.s)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.s.flink_rest_url}/overview", timeout=3) as r:
            return json.loads(r.read()).get("taskmanagers", 0) >= self.ordinal


def taskmanager_names(s: StackSettings) -> list[str]:
    return ["flink-taskmanager"] + [f"flink-taskmanager-{n}" for n in range(2, max(1, s.taskmanagers) + 1)]


def all_services(s: StackSettings) -> list[Service]:
    return [Kafka("kafka", s), Cassandra("cassandra", s), Redis("redis", s),
            FlinkJobManager("flink-jobmanager", s)] + [FlinkTaskManager(name, s) for name in taskmanager_names(s)]
