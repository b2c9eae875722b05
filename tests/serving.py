"""A real `l2v serve` app (uvicorn on 127.0.0.1, a free port) run on a thread, for the server tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import uvicorn

from retriever.server import ServerSettings, create_app


@contextmanager
def live_server(settings: ServerSettings, *, timeout: float = 120.0) -> Iterator[str]:
    """Start the server, wait until /ready answers 200, yield its base URL; stop it (lifespan shutdown) after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(f"{base}/ready", timeout=5)
                if response.status_code == 200:
                    break
                if response.json().get("status") == "failed":
                    raise RuntimeError(f"the server failed to load: {response.json()['error']}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not become ready")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
