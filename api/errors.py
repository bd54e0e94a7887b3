"""One JSON error shape for every refusal: {"error": {"code": ..., "message": ...}}."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("fleetflow.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorDetail(BaseModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str = Field(examples=["no shipment with tracking id TRK00000001"])


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _doc(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


# Every authenticated route can answer these; routes add their own 404/409/422 next to them.
AUTH_RESPONSES = {
    400: _doc("Malformed request (bad page token, bad parameter combination)"),
    401: _doc("Missing, unknown or revoked API key"),
    403: _doc("The key's role or carrier scope does not allow this"),
    422: _doc("Request failed validation"),
    429: {**_doc("Rate limit for this key exceeded; see Retry-After"),
          "headers": {"Retry-After": {"description": "Seconds until the next window", "schema": {"type": "integer"}}}},
    503: _doc("A backing store (Redis, Cassandra or Kafka) is unavailable"),
}


def responses(*extra: int, **described: str) -> dict:
    out = dict(AUTH_RESPONSES)
    for status in extra:
        out[status] = _doc({404: "Not found", 409: "Conflict"}.get(status, "Error"))
    for status, text in described.items():
        out[int(status.lstrip("_"))] = _doc(text)
    return out


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own Allow header names
    only the first matching route's, e.g. GET but not POST on /v1/geofences)."""
    from starlette.routing import Match
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse(error_body("INVALID_REQUEST", f"{where}: {first.get('msg', 'invalid request')}"),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Still the one error shape; the traceback goes to the log, not to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("INTERNAL", "internal error; see the API log"), status_code=500)
