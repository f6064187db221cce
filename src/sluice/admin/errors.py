"""Errors as ``{"error": {"type", "message"}}`` (plus ``problems`` for a 422)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sluice.config.loader import ConfigProblem

_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, problems: list[ConfigProblem] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"no {what} with id {ident!r}")


def error_body(status: int, message: str, problems: list[ConfigProblem]) -> dict[str, Any]:
    error: dict[str, Any] = {"type": _TYPES.get(status, "error"), "message": message}
    if problems:
        error["problems"] = [{"path": p.path, "message": p.message} for p in problems]
    return {"error": error}


def _respond(status: int, message: str, problems: list[ConfigProblem] | None = None) -> Any:
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, message, problems or []), status, headers=headers)


async def _api_error(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, ApiError)
    return _respond(exc.status, exc.message, exc.problems)


async def _http_error(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, HTTPException)
    return _respond(exc.status_code, str(exc.detail))


async def _validation_error(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for item in exc.errors():
        loc = [str(part) for part in item["loc"]]
        if loc and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(ConfigProblem(".".join(loc), message))
    summary = "; ".join(str(p) for p in problems)
    return _respond(422, f"invalid request: {summary}", problems)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
