"""API-key auth for the /v1 routes: `Authorization: Bearer KEY`, compared in constant time.

Checked in an ASGI middleware, before the body is read or parsed, so a client without the key
learns nothing but 401. The key comes from `--api-key-file` or `L2V_API_KEY`; it is never logged
or echoed in errors. /health, /ready and /metrics stay open (probes and scrapers).
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body

PROTECTED_PREFIX = "/v1"


class ApiKeyMiddleware:
    """Refuse /v1 requests whose bearer token is missing or differs from `api_key` (401)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = api_key.strip().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope["path"]) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            await _refuse(send, "missing API key: send the header 'Authorization: Bearer KEY'", "missing_api_key")
        elif not hmac.compare_digest(token.strip(), self._expected):
            await _refuse(send, "invalid API key", "invalid_api_key")
        else:
            await self.app(scope, receive, send)


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


async def _refuse(send: Send, message: str, code: str) -> None:
    payload = json.dumps(error_body(401, message, code=code)).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": payload})
