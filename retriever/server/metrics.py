"""Prometheus metrics of the server (prometheus-client), in a registry of its own per app.

`l2v_requests_total{method,route,status}`, `l2v_request_seconds{route}` (latency histogram),
`l2v_errors_total{status}`, `l2v_batch_size{model}` (texts per forward pass),
`l2v_queue_depth{model}` (texts waiting for the model), `l2v_texts_encoded_total{model}` and
`l2v_tokens_encoded_total{model}`. Routes are labelled by their template (`/v1/indexes/{name}`),
so label values stay bounded whatever paths clients send.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's counters, histograms and gauges (also the batchers' `BatchObserver`)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("l2v_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("l2v_request_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("l2v_errors", "Requests answered with an error status", ["status"],
                              registry=self.registry)
        self.batch_size = Histogram("l2v_batch_size", "Texts per forward pass of the model", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("l2v_queue_depth", "Texts waiting for the model", ["model"],
                                 registry=self.registry)
        self.texts = Counter("l2v_texts_encoded", "Texts encoded", ["model"], registry=self.registry)
        self.tokens = Counter("l2v_tokens_encoded", "Tokens of the texts encoded", ["model"],
                              registry=self.registry)

    def observe_batch(self, model: str, texts: int, tokens: int) -> None:
        self.batch_size.labels(model).observe(texts)
        self.texts.labels(model).inc(texts)
        self.tokens.labels(model).inc(tokens)

    def set_queue_depth(self, model: str, depth: int) -> None:
        self.queue_depth.labels(model).set(depth)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and counting it by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(scope["method"], _route(scope), status, time.perf_counter() - started)


def _route(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
