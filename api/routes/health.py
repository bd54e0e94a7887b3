from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RedisDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(redis: RedisDep):
    try:
        await redis.ping()
    except Exception as exc:
        return JSONResponse({"error": {"code": "NOT_READY", "message": f"redis: {exc}"}}, status_code=503)
    return {"status": "ready"}
