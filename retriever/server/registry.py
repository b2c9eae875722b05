"""What the server serves: models (each loaded once, behind one batcher) and indexes by name.

An index is opened with `Retriever.open(dir, encoder=...)` for searches and, on its first write,
with `Indexer(dir, encoder=...)` for writes, both given the shared `BatchingEncoder` of the
encoder its manifest names: indexes built with the same encoder (same fingerprint) share one
loaded model. Every write of an index runs on that index's one writer thread, so writes are
serialised and a response is sent only after `Indexer` committed; searches read the last committed
state (the retriever's store catches up from SQLite before each search).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from indexer import Indexer
from indexer.llm2vec import EMBEDDED_MODELS, LLM2VecError, resolve_model
from indexer.manifest import read_manifest

from ..encoders import encoder_for_manifest, load_encoder
from ..retriever import Retriever
from .batching import BatchingEncoder, BatchObserver
from .errors import ApiError
from .settings import ServerSettings, index_name

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ServedModel:
    """One loaded encoder: its public id, the names it answers to, the indexes using it."""

    id: str
    encoder: BatchingEncoder
    aliases: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": 0, "owned_by": "llm2vec-retriever", "dim": self.dim,
                "fingerprint": self.encoder.fingerprint(), "aliases": self.aliases, "indexes": self.indexes}


class ServedIndex:
    """One index: a `Retriever` for searches and a lazily opened `Indexer` on one writer thread."""

    def __init__(self, name: str, path: Path, model: ServedModel) -> None:
        self.name, self.path, self.model = name, path, model
        self.retriever = Retriever.open(path, encoder=model.encoder, batch_size=model.encoder.max_batch)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"l2v-writer-{name}")
        self._indexer: Indexer | None = None

    def write(self, action: Callable[[Indexer], T]) -> Future:
        """Run `action(indexer)` on the writer thread (opening the `Indexer` first if needed)."""
        return self._writer.submit(self._with_indexer, action)

    def _with_indexer(self, action: Callable[[Indexer], T]) -> T:
        if self._indexer is None:
            self._indexer = Indexer(self.path, encoder=self.model.encoder)
        return action(self._indexer)

    def stats(self) -> dict[str, Any]:
        """`IndexStore.stats` of the committed state, without the server's filesystem path."""
        stats = self.retriever.store.stats()
        stats.pop("path", None)
        return {"name": self.name, "model": self.model.id, **stats}

    def close(self) -> None:
        """Finish queued writes, close the writer (writes the FAISS snapshot) and the retriever."""
        self._writer.shutdown(wait=True)
        if self._indexer is not None:
            self._indexer.close()
            self._indexer = None
        self.retriever.close()


class Registry:
    """Loads the models and opens the indexes of `settings`; looked up by the routes."""

    def __init__(self, settings: ServerSettings, observer: BatchObserver | None = None) -> None:
        self.settings = settings
        self._observer = observer
        self.models: dict[str, ServedModel] = {}
        self.indexes: dict[str, ServedIndex] = {}
        self._names: dict[str, ServedModel] = {}
        self.ready = threading.Event()
        self.error: str | None = None

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load every model and open every index (slow: minutes for a large model). Raises on failure."""
        by_fingerprint: dict[str, ServedModel] = {}
        settings = self.settings
        for path in settings.indexes:
            manifest = read_manifest(path)
            fingerprint = manifest.get("encoder", {}).get("fingerprint")
            if fingerprint not in by_fingerprint:
                encoder = encoder_for_manifest(manifest, dtype=settings.dtype, device=settings.device)
                by_fingerprint[fingerprint] = self._add_model(_public_name(manifest["encoder"]["model"]), encoder)
            model = by_fingerprint[fingerprint]
            name = index_name(path)
            self.indexes[name] = ServedIndex(name, path, model)
            model.indexes.append(name)
            log.info("index %s (%s) served with model %s", name, path, model.id)
        if settings.model:
            encoder = load_encoder(settings.model, **_settings(settings))
            model = by_fingerprint.get(encoder.fingerprint()) or self._add_model(_public_name(settings.model), encoder)
            if settings.model not in self.models:
                model.aliases.append(settings.model)
        taken = set(self.models) | {alias for model in self.models.values() for alias in model.aliases}
        for model in self.models.values():  # an embedded model's bare name, and an index name, stand for it too
            for name in [_embedded_alias(model.id), *model.indexes]:
                if name is not None and name not in taken:
                    model.aliases.append(name)
                    taken.add(name)
        self._names = {alias: model for model in self.models.values() for alias in [model.id, *model.aliases]}
        self.ready.set()

    def _add_model(self, name: str, encoder: Any) -> ServedModel:
        model_id = name if name not in self.models else f"{name}@{encoder.fingerprint()[:8]}"
        batcher = BatchingEncoder(encoder, max_batch=self.settings.max_batch, max_wait_ms=self.settings.max_wait_ms,
                                  name=model_id, observer=self._observer)
        model = ServedModel(model_id, batcher)
        self.models[model_id] = model
        log.info("model %s loaded (%d dimensions, fingerprint %s)", model_id, encoder.dim, encoder.fingerprint())
        return model

    # ------------------------------------------------------------------ lookups
    def model(self, name: str) -> ServedModel:
        """The model called `name` (its id, an alias, or the name of an index using it); 400 otherwise."""
        if name not in self._names:
            served = ", ".join(sorted(self._names)) or "none"
            raise ApiError(400, f"the model {name!r} is not served here; served models: {served} (GET /v1/models)",
                           param="model", code="model_not_found")
        return self._names[name]

    def index(self, name: str) -> ServedIndex:
        """The served index called `name`; 404 otherwise (names never resolve to paths)."""
        if name not in self.indexes:
            served = ", ".join(sorted(self.indexes)) or "none (this server serves embeddings only)"
            raise ApiError(404, f"no index named {name!r} is served here; served indexes: {served}",
                           param="index", code="index_not_found")
        return self.indexes[name]

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Close every index (finishing their queued writes), then stop the batchers."""
        for index in self.indexes.values():
            try:
                index.close()
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing index %s failed", index.name)
        for model in self.models.values():
            model.encoder.close()
        log.info("closed %d index(es) and %d model(s)", len(self.indexes), len(self.models))


def _public_name(model: str) -> str:
    """A model's id: a local path gives its directory or file name (no server paths in answers)."""
    return Path(model).name if Path(model).exists() else str(model)


def _embedded_alias(model_id: str) -> str | None:
    """The bare embedded name ("smollm2-135m") when it loads exactly this recipe ("smollm2-135m:mntp+supervised+distill2")."""
    base = model_id.partition(":")[0].partition("@")[0]
    if base == model_id or base not in EMBEDDED_MODELS:
        return None
    try:
        return base if resolve_model(base).source == model_id else None
    except LLM2VecError:
        return None


def _settings(settings: ServerSettings) -> dict[str, Any]:
    return {key: value for key, value in (("dtype", settings.dtype), ("device", settings.device)) if value}
