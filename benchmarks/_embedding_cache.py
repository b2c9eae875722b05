"""Document embeddings cached on disk, keyed by (encoder fingerprint, text sha256), for resumable runs.

    .cache/beir-embeddings/<encoder fingerprint>/<dataset>/
        shard-<time>-<pid>-<n>.safetensors    "hashes" uint8 [n, 32] (sha256 of each text), "vectors" float32 [n, dim]

Each shard holds its own text hashes, so the shards are the index: opening a cache reads every
shard's hashes. A shard is written to a temporary name and renamed into place (`os.replace`), so a
killed run leaves whole shards only, and the next run encodes only the texts no shard holds. Shards
never overwrite each other (their names are unique), so two runs may share a cache; a shard that
cannot be read is moved aside with a warning and its texts encoded again. No pickle.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / ".cache" / "beir-embeddings"
_counter = itertools.count()


def text_sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors of texts under `root/<fingerprint>/<dataset>/`, one encoder and one corpus."""

    def __init__(self, root: str | Path, fingerprint: str, dataset: str) -> None:
        if not fingerprint or "/" in fingerprint or not dataset or "/" in dataset:
            raise ValueError(f"fingerprint and dataset name a directory: got {fingerprint!r}, {dataset!r}")
        self.directory = Path(root) / fingerprint / dataset
        self.directory.mkdir(parents=True, exist_ok=True)
        self._rows: dict[bytes, np.ndarray] = {}
        self._pending: list[tuple[bytes, np.ndarray]] = []
        for shard in sorted(self.directory.glob("shard-*.safetensors")):
            self._read(shard)

    def _read(self, shard: Path) -> None:
        try:
            tensors = load_file(str(shard))
            hashes, vectors = tensors["hashes"], tensors["vectors"]
            if hashes.ndim != 2 or hashes.shape[1] != 32 or len(hashes) != len(vectors):
                raise ValueError(f"shapes {hashes.shape} and {vectors.shape} do not match")
        except Exception as exc:  # safetensors raises several types for a torn or foreign file
            warnings.warn(f"embedding cache shard {shard} is unreadable ({exc}); moved aside, its texts will be "
                          "encoded again", RuntimeWarning, stacklevel=3)
            os.replace(shard, shard.with_suffix(".bad"))
            return
        for digest, vector in zip(hashes, vectors):
            self._rows[digest.tobytes()] = vector

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text_sha256(text) in self._rows

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """Cached vectors of `texts` (each must be cached), in order."""
        return np.stack([self._rows[text_sha256(t)] for t in texts]).astype(np.float32, copy=False)

    def add(self, texts: Sequence[str], vectors: np.ndarray, *, flush_at: int = 0) -> None:
        """Remember `vectors` of `texts`; written to a shard once `flush_at` rows are pending (0: now)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        for text, vector in zip(texts, vectors):
            digest = text_sha256(text)
            if digest not in self._rows:
                self._rows[digest] = vector
                self._pending.append((digest, vector))
        if len(self._pending) >= max(1, flush_at):
            self.flush()

    def flush(self) -> None:
        """Write the pending rows as one shard (temporary name, then an atomic rename)."""
        if not self._pending:
            return
        name = f"shard-{time.time_ns()}-{os.getpid()}-{next(_counter)}"
        staging = self.directory / f".{name}.tmp"
        hashes = np.frombuffer(b"".join(d for d, _ in self._pending), dtype=np.uint8).reshape(-1, 32)
        save_file({"hashes": hashes, "vectors": np.stack([v for _, v in self._pending])}, str(staging))
        os.replace(staging, self.directory / f"{name}.safetensors")
        self._pending = []

    def encode(self, texts: Sequence[str], encode: Callable[[list[str]], Any], *, chunk: int = 256,
               desc: str = "encode", progress: bool = True) -> np.ndarray:
        """Vectors of `texts`: cached ones read, the others encoded `chunk` at a time by `encode`
        (a list of texts -> array) and each chunk written as a shard before the next starts."""
        from tqdm.auto import tqdm

        missing = list(dict.fromkeys(t for t in texts if t not in self))
        with tqdm(total=len(missing), desc=desc, unit="text", disable=not progress or not missing) as bar:
            bar.set_postfix(cached=len(set(texts)) - len(missing))
            for start in range(0, len(missing), chunk):
                batch = missing[start : start + chunk]
                self.add(batch, np.asarray(encode(batch)))
                bar.update(len(batch))
        return self.get(texts) if texts else np.empty((0, 0), dtype=np.float32)


class CachedEncoder:
    """An `LLM2VecEncoder` whose document encodes (no instruction) go through an `EmbeddingCache`.

    Everything else (fingerprint, tokenizer, config, query encodes with an instruction) is the
    wrapped encoder's, so `Indexer` and `Retriever` take it in the encoder's place. Call `flush()`
    (or use it as a context manager) to write the last rows.
    """

    def __init__(self, encoder: Any, cache: EmbeddingCache, *, flush_at: int = 256) -> None:
        self._encoder, self.cache, self._flush_at = encoder, cache, flush_at
        self.encoded = 0
        """Texts this wrapper sent to the encoder (the others came from the cache)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: Any, instruction: Any = None, *, normalize: bool = False, **kwargs: Any) -> np.ndarray:
        if instruction is not None or not normalize or isinstance(texts, str) or not texts \
                or not all(isinstance(t, str) for t in texts):
            return self._encoder.encode(texts, instruction, normalize=normalize, **kwargs)
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            vectors = self._encoder.encode(missing, normalize=True, **kwargs)
            self.cache.add(missing, vectors, flush_at=self._flush_at)
            self.encoded += len(missing)
        return self.cache.get(texts)

    def flush(self) -> None:
        self.cache.flush()

    def __enter__(self) -> "CachedEncoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()
