"""API settings: frozen, from FLEETFLOW_API_* environment variables."""
from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETFLOW_API_", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    cassandra_host: str = "127.0.0.1"
    cassandra_port: int = 9042
    keyspace: str = "fleetflow"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Pepper for hashing API keys; the default is for the local stack only.
    key_pepper: SecretStr = SecretStr("fleetflow-local-dev-pepper")


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    return ApiSettings()
