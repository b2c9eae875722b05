"""Request limits: body size (413, checked before the body is parsed), texts per request and
characters per text (400), each error naming the limit and the `l2v serve` option that sets it."""

from __future__ import annotations

import json
from typing import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body


DRAIN_FACTOR = 4
"""A refused body up to this many times the limit is read and dropped before the 413, so the client
reads the answer instead of a connection reset; a larger one is cut off."""


async def _drain(receive: Receive, budget: int) -> None:
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length or while streaming it in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        drain_budget = DRAIN_FACTOR * self.max_bytes
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= drain_budget:
                await _drain(receive, drain_budget)
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await _drain(receive, drain_budget - size)
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps(error_body(413, f"the request body is over {self.max_bytes} bytes (--max-body-bytes); "
                                             "send fewer or shorter texts per request",
                                        code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def check_texts(texts: Sequence[str], field: str, *, max_texts: int, max_chars: int) -> list[str]:
    """`texts` as a list, or a 400 naming the first empty, over-long or surplus one."""
    if not texts:
        raise ApiError(400, f"{field} is empty: give at least one text", param=field, code="empty_input")
    if len(texts) > max_texts:
        raise ApiError(400, f"{field} has {len(texts)} texts; at most {max_texts} per request (--max-texts)",
                       param=field, code="too_many_inputs")
    for i, text in enumerate(texts):
        where = f"{field}[{i}]"
        if not text.strip():
            raise ApiError(400, f"{where} is empty or whitespace-only: there is nothing to encode", param=where,
                           code="empty_input")
        if len(text) > max_chars:
            raise ApiError(400, f"{where} has {len(text)} characters; at most {max_chars} per text (--max-chars)",
                           param=where, code="input_too_long")
    return list(texts)
