"""`ServerSettings`: what `l2v serve` serves and the limits it enforces (one frozen dataclass)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DEFAULT_MAX_TEXTS = 2048  # OpenAI's limit of inputs per embeddings request
DEFAULT_MAX_CHARS = 100_000


@dataclass(frozen=True)
class ServerSettings:
    """Indexes (served under their directory names), models, batching and request limits.

    `model` alone serves embeddings only; with indexes it adds a model (or names the one they
    share). `api_key` None leaves /v1 open (only allowed on loopback by the CLI).
    """

    indexes: tuple[Path, ...] = ()
    model: str | None = None
    dtype: str | None = None
    device: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_texts: int = DEFAULT_MAX_TEXTS
    max_chars: int = DEFAULT_MAX_CHARS
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "indexes", tuple(Path(p) for p in self.indexes))
        if not self.indexes and not self.model:
            raise ValueError("nothing to serve: give index directories, a model, or both")
        for name in ("max_batch", "max_body_bytes", "max_texts", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty")
        names = [index_name(p) for p in self.indexes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two index directories share the name {duplicates[0]!r}; each index is served under "
                             "its directory name, so rename one")


def index_name(path: Path) -> str:
    """The name an index is served under: its directory's name."""
    return Path(path).resolve().name


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
