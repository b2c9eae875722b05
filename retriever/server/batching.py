"""Micro-batching: texts from concurrent requests share one forward pass of the model.

`BatchingEncoder` owns one loaded `LLM2VecEncoder` and one worker thread, the only thread that
runs the model. Callers submit (instruction, text) pairs and get a `Future` of their rows; the
worker takes up to `max_batch` queued texts, waiting at most `max_wait_ms` for more once the first
arrives, encodes them with one `encoder.encode` call (which length-sorts and pads them together),
and routes each row back to its request. Requests that arrive while the model is busy form the
next batch, so under load batches fill without waiting; a request larger than `max_batch` is cut
across batches, first come first served.

It is also a drop-in for the encoder inside `Retriever` and `Indexer` (same `encode` signature,
`fingerprint`, `tokenizer`, `config`, `dim`), so searches and document writes batch with
embedding requests and go through the library's own code paths unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from indexer.llm2vec.text_encoder import TextEncoder
from indexer.vectors import normalize_rows


class BatchObserver(Protocol):
    """Where the batcher reports its work (the server's Prometheus metrics)."""

    def observe_batch(self, model: str, texts: int, tokens: int) -> None: ...

    def set_queue_depth(self, model: str, depth: int) -> None: ...


@dataclass(frozen=True)
class Encoded:
    """The raw (unnormalised) float32 vectors [n, dim] of one request and its token count."""

    vectors: np.ndarray
    tokens: int


@dataclass
class _Job:
    texts: list[str]
    instructions: list[str | None]
    future: Future
    vectors: np.ndarray
    tokens: int = 0
    taken: int = 0  # rows handed to a batch
    done: int = 0  # rows encoded


class BatchingEncoder:
    """Run `encoder` on one worker thread, grouping concurrent requests into batches."""

    def __init__(self, encoder: TextEncoder, *, max_batch: int = 32, max_wait_ms: float = 2.0,
                 name: str = "model", observer: BatchObserver | None = None) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.name = name
        self._observer = observer
        self._queue: deque[_Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"l2v-encoder-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the encoder's face
    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    @property
    def config(self) -> Any:
        return self.encoder.config

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def spec(self) -> dict[str, Any]:
        return self.encoder.spec()

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def __repr__(self) -> str:
        return f"BatchingEncoder({self.encoder!r}, max_batch={self.max_batch})"

    def encode(self, texts: str | Sequence[str], instruction: str | Sequence[str | None] | None = None, *,
               batch_size: int | None = None, normalize: bool = False, show_progress_bar: bool | None = None,
               convert_to: str = "numpy") -> np.ndarray:
        """`LLM2VecEncoder.encode` through the batcher (blocks the calling thread, never the worker).

        `batch_size` and `show_progress_bar` are accepted for compatibility: the batcher decides.
        """
        if convert_to != "numpy":
            raise ValueError("the batching encoder returns numpy arrays only")
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if instruction is None or isinstance(instruction, str):
            instructions = [instruction] * len(items)
        else:
            instructions = list(instruction)
        vectors = self.submit(items, instructions).result().vectors
        if normalize:
            vectors = normalize_rows(vectors)
        return vectors[0] if single else vectors

    # ------------------------------------------------------------------ batching
    def submit(self, texts: Sequence[str], instructions: Sequence[str | None]) -> Future:
        """Queue `texts` (each with its instruction or None); the Future gives an `Encoded`."""
        future: Future = Future()
        if len(texts) != len(instructions):
            future.set_exception(ValueError(f"{len(instructions)} instructions for {len(texts)} texts"))
            return future
        if not texts:
            future.set_result(Encoded(np.empty((0, self.dim), dtype=np.float32), 0))
            return future
        job = _Job(list(texts), list(instructions), future, np.empty((len(texts), self.dim), dtype=np.float32))
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the encoder {self.name!r} is shut down")
            self._queue.append(job)
            self._queued_texts += len(texts)
            self._report_depth()
            self._cond.notify()
        return future

    def close(self) -> None:
        """Finish the queued work, then stop the worker thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.set_queue_depth(self.name, self._queued_texts)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                deadline = time.monotonic() + self.max_wait
                while self._queued_texts < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                parts = self._take()
                self._report_depth()
            if parts:
                self._encode(parts)

    def _take(self) -> list[tuple[_Job, int, int]]:
        """Up to `max_batch` queued rows, oldest first, as (job, start, end) slices."""
        parts: list[tuple[_Job, int, int]] = []
        room = self.max_batch
        while self._queue and room:
            job = self._queue[0]
            if job.future.done():  # failed in an earlier part, or cancelled by its caller
                self._queue.popleft()
                self._queued_texts -= len(job.texts) - job.taken
                continue
            n = min(room, len(job.texts) - job.taken)
            parts.append((job, job.taken, job.taken + n))
            job.taken += n
            room -= n
            self._queued_texts -= n
            if job.taken == len(job.texts):
                self._queue.popleft()
        return parts

    def _encode(self, parts: list[tuple[_Job, int, int]]) -> None:
        texts = [t for job, start, end in parts for t in job.texts[start:end]]
        instructions = [i for job, start, end in parts for i in job.instructions[start:end]]
        try:
            vectors = self.encoder.encode(texts, instructions, batch_size=len(texts), show_progress_bar=False)
            lengths = [len(ids) for ids in self.encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        except Exception as exc:  # noqa: BLE001 - routed to the request(s) that caused it
            if len(parts) > 1:  # one request's bad input must not fail the others: retry them one by one
                for part in parts:
                    self._encode([part])
                return
            _fail(parts[0][0].future, exc)
            return
        if self._observer is not None:
            self._observer.observe_batch(self.name, len(texts), sum(lengths))
        row = 0
        for job, start, end in parts:
            n = end - start
            job.vectors[start:end] = vectors[row : row + n]
            job.tokens += sum(lengths[row : row + n])
            job.done += n
            row += n
            if job.done == len(job.texts):
                _resolve(job.future, Encoded(job.vectors, job.tokens))


def _resolve(future: Future, value: Encoded) -> None:
    try:
        future.set_result(value)
    except InvalidStateError:  # the caller gave up (cancelled) meanwhile
        pass


def _fail(future: Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except InvalidStateError:
        pass
