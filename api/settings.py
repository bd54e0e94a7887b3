"""API settings: frozen, from FLEETFLOW_API_* environment variables."""
from __future__ import annotations

import logging
from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PEPPER = "fleetflow-local-dev-pepper"

log = logging.getLogger("fleetflow.api")


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETFLOW_API_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    cassandra_host: str = "127.0.0.1"
    cassandra_port: int = 9042
    keyspace: str = "fleetflow"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Pepper for hashing API keys and signing page tokens; the default is for the local stack only.
    key_pepper: SecretStr = SecretStr(DEV_PEPPER)
    # A revoked key keeps working in a running API for at most this long.
    key_cache_ttl_s: float = 30.0
    # Unknown keys are remembered briefly so junk keys cannot hammer Cassandra.
    key_negative_cache_ttl_s: float = 5.0
    key_cache_size: int = 10_000
    rate_limit_window_s: int = 60
    # Same key + same body within this window replays the stored response.
    idempotency_ttl_s: int = 24 * 3600
    # How long an event_id is remembered for dedup: the scans/pings retention (older events are TOO_OLD anyway).
    event_id_ttl_s: int = 7 * 24 * 3600
    # Seconds between SSE keep-alive comments (proxies drop idle connections).
    sse_keepalive_s: float = 15.0
    kafka_ack_timeout_s: float = 10.0
    # Track coarsening: H3 resolution of the cell whose centre is shown (7 = ~1.2 km edge).
    track_h3_resolution: int = 7
    json_access_log: bool = True
    # Types read by GET /v1/alerts when no type is given (alerts_by_day_type is partitioned by type).
    alert_types: tuple[str, ...] = ("VEHICLE_STALLED", "ROUTE_DEVIATION", "SIGNAL_LOST", "RESTRICTED_AREA",
                                    "SHIPMENT_STUCK", "LATE_RISK")


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    s = ApiSettings()
    if s.key_pepper.get_secret_value() == DEV_PEPPER:
        log.warning("FLEETFLOW_API_KEY_PEPPER is not set: using the public local-development pepper")
    return s
