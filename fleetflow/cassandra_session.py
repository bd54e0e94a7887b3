"""One way to open a Cassandra session, shared by the CLI, the jobs' sinks and the API."""
from __future__ import annotations

from typing import Any


def connect(s: Any, keyspace: str | None = None, timeout_s: float = 10.0):
    """Return ``(cluster, session)`` for the stack described by settings ``s``."""
    from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
    from cassandra.policies import RoundRobinPolicy

    # RoundRobin instead of DC-aware default: one local node, and no warning per connect.
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout_s)
    auth = None
    username = getattr(s, "cassandra_username", "")
    if username:
        from cassandra.auth import PlainTextAuthProvider
        auth = PlainTextAuthProvider(username=username, password=getattr(s, "cassandra_password", ""))
    # Settings objects name the contact point cassandra_host; older callers only have host.
    host = getattr(s, "cassandra_host", None) or s.host
    cluster = Cluster([host], port=s.cassandra_port, connect_timeout=timeout_s, auth_provider=auth,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5)
    session = cluster.connect(keyspace)
    return cluster, session
