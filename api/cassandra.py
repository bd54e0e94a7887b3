"""Cassandra for an asyncio app: driver futures bridged to asyncio, lazy connect.

The API starts even if Cassandra is down (Redis-only routes keep working); the first
query connects, and /readyz reports the failure instead of the process crashing.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from api.errors import ApiError
from api.settings import ApiSettings


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    paging_state: bytes | None


class CassandraDb:
    def __init__(self, settings: ApiSettings):
        self._s = settings
        self._cluster = None
        self._session = None
        self._prepared: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connect(self):
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import RoundRobinPolicy

        with self._lock:
            if self._session is None:
                profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=5.0)
                cluster = Cluster([self._s.cassandra_host], port=self._s.cassandra_port, connect_timeout=5.0,
                                  execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5)
                try:
                    self._session = cluster.connect(self._s.keyspace)
                except Exception:
                    cluster.shutdown()
                    raise
                self._cluster = cluster
        return self._session

    async def session(self):
        if self._session is not None:
            return self._session
        try:
            return await asyncio.to_thread(self._connect)
        except Exception as exc:
            raise ApiError(503, "CASSANDRA_UNAVAILABLE", f"cannot reach Cassandra: {exc}") from None

    @property
    def cluster(self):
        return self._cluster

    def has_table(self, table: str) -> bool:
        if self._cluster is None:
            return False
        ks = self._cluster.metadata.keyspaces.get(self._s.keyspace)
        return bool(ks and table in ks.tables)

    async def _prepare(self, cql: str):
        stmt = self._prepared.get(cql)
        if stmt is None:
            session = await self.session()
            stmt = await asyncio.to_thread(session.prepare, cql)
            self._prepared[cql] = stmt
        return stmt

    async def page(self, cql: str, params: Sequence[Any] = (), *, fetch_size: int = 100,
                   paging_state: bytes | None = None) -> Page:
        """One page of rows; ``paging_state`` continues where the previous page ended."""
        from cassandra import InvalidRequest, RequestExecutionException, RequestValidationException
        from cassandra.protocol import ProtocolException
        from cassandra.query import BoundStatement

        try:
            stmt: BoundStatement = (await self._prepare(cql)).bind(tuple(params))
        except ApiError:
            raise
        except InvalidRequest as exc:
            raise ApiError(503, "STORE_SCHEMA_MISSING", f"the query's table is not there yet: {exc}") from None
        stmt.fetch_size = fetch_size
        session = await self.session()
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def _settle(_result=None):
            if not done.done():
                done.set_result(None)

        try:
            fut = session.execute_async(stmt, paging_state=paging_state)
        except Exception as exc:
            raise ApiError(503, "CASSANDRA_UNAVAILABLE", str(exc)) from None
        fut.add_callbacks(lambda r: loop.call_soon_threadsafe(_settle), lambda e: loop.call_soon_threadsafe(_settle))
        await done
        try:
            rs = fut.result()
        except (ProtocolException, RequestValidationException) as exc:
            # Paging states are signed by this API, so a refusal here means a stale token
            # (e.g. from before a schema change) rather than a forged one.
            raise ApiError(400, "INVALID_PAGE_TOKEN", f"Cassandra refused the query: {exc}") from None
        except (RequestExecutionException, Exception) as exc:
            raise ApiError(503, "CASSANDRA_UNAVAILABLE", f"{type(exc).__name__}: {exc}") from None
        return Page(list(rs.current_rows), rs.paging_state)

    async def all(self, cql: str, params: Sequence[Any] = (), limit: int = 1000) -> list[Any]:
        return (await self.page(cql, params, fetch_size=limit)).rows

    async def ping(self) -> None:
        await self.all("SELECT release_version FROM system.local")

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
