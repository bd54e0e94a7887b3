from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, str] = Field(examples=[{"redis": "ok", "cassandra": "ok", "kafka": "ok"}])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


async def _check(name: str, coro) -> tuple[str, str]:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT_S)
        return name, "ok"
    except Exception as exc:
        return name, f"{type(exc).__name__}: {exc}"[:300]


@router.get("/readyz", response_model=Ready, summary="Redis, Cassandra and Kafka all answer",
            responses={503: {"model": Ready, "description": "At least one backing service does not answer"}})
async def readyz(request: Request):
    st = request.app.state
    checks = dict(await asyncio.gather(_check("redis", st.redis.ping()), _check("cassandra", st.cassandra.ping()),
                                       _check("kafka", st.publisher.ping())))
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
