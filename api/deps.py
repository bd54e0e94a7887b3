"""Typed dependency shortcuts for routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from api.settings import ApiSettings, get_settings


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
