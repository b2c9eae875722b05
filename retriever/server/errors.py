"""Errors as OpenAI-shaped JSON: `{"error": {"message", "type", "param", "code"}}`, never a traceback.

Every failure a client can cause is a 4xx naming the problem: the server's own `ApiError`s, request
validation (malformed JSON, wrong types, unknown fields), and the library's own errors (a bad
filter, an unknown task, an invalid document, an index locked by another writer). Anything else is
a bug: logged with its traceback on the server, answered with a plain 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.errors import DocumentError, FilterError, IndexerError, IndexLockedError
from indexer.llm2vec import LLM2VecError

from ..errors import RetrieverError, UnknownTaskError

log = logging.getLogger(__name__)

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
         503: "service_unavailable_error"}


class ApiError(Exception):
    """An error answered as `status` with an OpenAI-shaped body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else
                                                             "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param=param, code=code), status_code=status, headers=headers)


def from_library(exc: Exception) -> ApiError:
    """The HTTP answer to an error the library raised on purpose (all are the caller's fault but one)."""
    if isinstance(exc, IndexLockedError):
        return ApiError(409, str(exc), code="index_locked")
    if isinstance(exc, UnknownTaskError):
        return ApiError(400, str(exc), param="task", code="unknown_task")
    if isinstance(exc, FilterError):
        return ApiError(400, str(exc), param="filter", code="invalid_filter")
    if isinstance(exc, DocumentError):
        return ApiError(400, str(exc), param="documents", code="invalid_document")
    if isinstance(exc, (RetrieverError, LLM2VecError)):
        return ApiError(400, str(exc), code="invalid_value")
    return ApiError(400, str(exc), code="index_error")


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return f"the request body is not valid JSON ({detail})".replace(" ()", ""), None
    parts = []
    for error in errors[:5]:
        where = _location(tuple(error.get("loc", ())))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "is required"
        elif error.get("type") == "extra_forbidden":
            message = "is not a known field"
        if error.get("type") in ("model_attributes_type", "dict_type") and not where:
            message = "the request body must be a JSON object"
        parts.append(f"{where}: {message}" if where and not message.startswith(where) else message)
    first = _location(tuple(errors[0].get("loc", ()))) if errors else None
    return "; ".join(parts) or "invalid request", first or None


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the OpenAI error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param=param, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)), headers=exc.headers)

    async def _library(request: Request, exc: Exception) -> JSONResponse:
        error = from_library(exc)
        return error_response(error.status, error.message, param=error.param, code=error.code)

    for kind in (RetrieverError, IndexerError, LLM2VecError):
        app.add_exception_handler(kind, _library)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error (logged on the server)", code="internal_error")
