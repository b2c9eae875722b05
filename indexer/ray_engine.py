"""`l2v index build --engine ray`: the encode step on Ray Data, committed by the one local writer.

One code path with the local engine: the same readers (`ingest.read_file`), the same
validation (`as_document`), `chunk_text` and `encode_documents`. What Ray adds is where they run:

1. Sources are read by Ray Data on the driver's node: each file by the local readers in a
   task, Parquet files by `ray.data.read_parquet` (their rows become documents through the
   same `RecordFields`; they are run after the other sources). Documents are grouped in
   corpus order into shards of `shard_docs`, each named by a hash of its documents and the
   index settings (`shards.shard_name`).
2. `map_batches` over an actor pool of `ShardEncoder`s (the model loaded once per actor,
   optionally on a GPU) chunks and encodes each shard, skipping documents whose text the
   index already holds, and returns it as .safetensors bytes.
3. The driver receives shards in corpus order, writes each to INDEX_DIR/shards/, commits it
   (`shards.commit_shard`: rows, vectors and shard name in one transaction) and deletes the file.

Committing in corpus order gives the chunk ids the local engine gives. A rerun after a crash
skips committed shards by name, commits shard files left on disk without re-encoding them (a
truncated or corrupt one is deleted, with a warning naming it, and re-encoded) and encodes
the rest. A shard whose worker dies while encoding it is retried on a restarted worker; after
`max_attempts` deaths the build stops with an error naming the shard, and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .documents import DEFAULT_MAX_CHARS, Document, as_document
from .errors import DocumentError, EncoderMismatchError, IndexerError, SourceError
from .ingest import SUPPORTED, IngestReport, RecordFields, count_documents, expand_sources, read_file
from .llm2vec.config import check_positive_ints
from .loading import encoder_from_manifest
from .shards import (SUFFIX, ShardError, ShardSettings, commit_shard, encode_shard, indexed_keys, parse_shard,
                     read_shard, shard_bytes, shard_name, shard_path, write_shard)
from .writer import AddStats, Indexer

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'llm2vec-retriever[ray]'"
PARQUET = ".parquet"
SHARD_DIR = "shards"
DEFAULT_RAY_PORT = 6379
DEFAULT_CLIENT_PORT = 10001
_GCS_WAIT = "RAY_gcs_server_port_wait_time_s"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: `address` None starts a local Ray instance (or joins the one
    this process already has); "auto" joins the cluster this machine belongs to."""

    address: str | None = None
    concurrency: int = 1
    num_gpus_per_worker: float = 0.0
    num_cpus_per_worker: float = 1.0
    shard_docs: int = 256
    max_attempts: int = 3
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_positive_ints(self, ("concurrency", "shard_docs", "max_attempts"))
        if self.num_gpus_per_worker < 0 or self.num_cpus_per_worker <= 0:
            raise ValueError("num_gpus_per_worker must be >= 0 and num_cpus_per_worker > 0")


@dataclass
class RayBuildStats(AddStats):
    """`AddStats` plus what was read (files, records) and what happened to the shards."""

    files: int = 0
    documents: int = 0
    shards_encoded: int = 0
    shards_reused: int = 0
    shards_skipped: int = 0


# ---------------------------------------------------------------------------- connecting
def require_ray() -> Any:
    """The `ray` module, or an `IndexerError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise IndexerError(f"the Ray engine needs Ray Data, which is not installed ({exc}): {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        host, port = rest, str(DEFAULT_CLIENT_PORT if client else DEFAULT_RAY_PORT)
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float) -> None:
    """A TCP connection to the cluster's head within `timeout` seconds, or an `IndexerError`."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
        raise IndexerError(f"cannot reach the Ray cluster at {address!r} ({host}:{port}: {reason} after at most "
                           f"{timeout:g}s): check --ray-address, or start a head node with `ray start --head`"
                           ) from None


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Connect to (or start) Ray for the block; shuts down only an instance it started itself."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = options.address or os.environ.get("RAY_ADDRESS")
    remote = address not in (None, "", "auto", "local")
    if remote:
        check_reachable(address, options.connect_timeout)
    wait = os.environ.get(_GCS_WAIT)
    if remote and wait is None:  # Ray retries a silent head for ~20 s; bound it to the timeout
        os.environ[_GCS_WAIT] = str(max(1, round(options.connect_timeout)))
    try:
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=False)
    except ConnectionError as exc:
        raise IndexerError(f"cannot connect to Ray at {address or 'a local instance'!r} ({exc}): is a Ray head "
                           "running there (`ray start --head`)?") from None
    finally:
        if remote and wait is None:
            os.environ.pop(_GCS_WAIT, None)
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_resources(ray: Any, options: RayOptions) -> None:
    """Fail fast when not even one worker fits the cluster (Ray would wait for it forever)."""
    gpu = options.num_gpus_per_worker > 0
    kind, each = ("GPU", options.num_gpus_per_worker) if gpu else ("CPU", options.num_cpus_per_worker)
    have = ray.cluster_resources().get(kind, 0)
    if have < each:
        hint = "add GPU workers (`ray start --address HEAD:6379 --num-gpus N`)" if kind == "GPU" else "ask for fewer"
        raise IndexerError(f"each encoder worker asks for {each:g} {kind}(s) but the Ray cluster has {have:g}: {hint}")
    if have < each * options.concurrency:
        log.warning("%d workers x %g %s do not fit the cluster's %g %s now: the rest start when resources appear",
                    options.concurrency, each, kind, have, kind)


# ---------------------------------------------------------------------------- reading (runs in Ray tasks)
@dataclass(frozen=True)
class _Plan:
    """What the readers need to name shards and tell which to skip."""

    fields: RecordFields
    settings: ShardSettings
    shard_docs: int
    max_chars: int
    committed: frozenset[str]
    stored: frozenset[str]


def _shard_row(plan: _Plan, objs: Sequence[Any], skipped: list[tuple[str, str]], files: int) -> dict[str, Any]:
    docs = []
    skipped = list(skipped)
    for obj in objs:
        try:
            docs.append(as_document(obj, max_chars=plan.max_chars))
        except DocumentError as exc:
            label = (obj.get("id") or obj.get("source")) if isinstance(obj, dict) else None
            skipped.append((str(label), str(exc)))
    name = shard_name(docs, skipped, plan.settings)
    state = "committed" if name in plan.committed else "stored" if name in plan.stored else "encode"
    payload = [{"id": d.id, "text": d.text, "metadata": d.metadata, "source": d.source} for d in docs]
    return {"name": name, "state": state, "ids": json.dumps([d.id for d in docs]),
            "documents": json.dumps(payload, ensure_ascii=False) if state == "encode" else "",
            "skipped": json.dumps(skipped), "files": files, "read": len(objs)}


class _QuietReport(IngestReport):
    """Skips are logged by the driver when it commits them, not by the reader task."""

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))


def _read_file_shards(row: dict[str, Any], plan: _Plan) -> Iterator[dict[str, Any]]:
    """flat_map: one file -> its shard rows, documents in file order."""
    report = _QuietReport()
    objs: list[Any] = []
    reported = files = 0
    for obj in read_file(Path(row["path"]), row["doc_id"], plan.fields, report):
        objs.append(obj)
        if len(objs) == plan.shard_docs:
            yield _shard_row(plan, objs, report.skipped[reported:], report.files - files)
            objs, reported, files = [], len(report.skipped), report.files
    if objs or len(report.skipped) > reported or report.files > files:
        yield _shard_row(plan, objs, report.skipped[reported:], report.files - files)


def _read_parquet_shards(batch: Any, plan: _Plan) -> Any:
    """map_batches over `read_parquet` rows (a batch is one shard): records -> documents -> a shard row."""
    import pyarrow as pa

    objs, skipped = [], []
    for record in batch.to_pylist():
        where = str(record.pop("path"))
        try:
            objs.append(plan.fields.to_document(record, where))
        except SourceError as exc:
            skipped.append((where, str(exc)))
    return pa.Table.from_pylist([_shard_row(plan, objs, skipped, 0)])


# ---------------------------------------------------------------------------- encoding (runs in Ray actors)
@dataclass(frozen=True)
class EncoderLoader:
    """Loads in each actor the encoder the driver has: its `spec()` names the (resolved) model,
    adapters and settings, so every replica encodes as the driver would."""

    spec: dict[str, Any]

    def __call__(self) -> Any:
        return encoder_from_manifest({"encoder": self.spec})


class _Attempts:
    """A tiny actor counting, per shard of a build, the encodings that started and never finished:
    the times its worker died while encoding it (Ray restarts dead workers and retries for ever)."""

    def __init__(self) -> None:
        self.running: set[tuple[str, str]] = set()
        self.deaths: dict[tuple[str, str], int] = {}

    def start(self, build: str, name: str) -> int:
        if (build, name) in self.running:
            self.deaths[build, name] = self.deaths.get((build, name), 0) + 1
        self.running.add((build, name))
        return self.deaths.get((build, name), 0)

    def finish(self, build: str, name: str) -> None:
        self.running.discard((build, name))

    def forget(self, build: str) -> None:
        self.running = {key for key in self.running if key[0] != build}
        self.deaths = {key: n for key, n in self.deaths.items() if key[0] != build}


class ShardEncoder:
    """The map_batches callable class: one encoder per actor, loaded in `__init__`, never per batch."""

    def __init__(self, load_encoder: Callable[[], Any], settings: ShardSettings, known: np.ndarray, batch_size: int,
                 threads: int | None, attempts: Any, build: str, max_attempts: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.encoder = load_encoder()
        if self.encoder.fingerprint() != settings.fingerprint:
            raise EncoderMismatchError(
                f"the encoder loaded on worker {socket.gethostname()} has fingerprint {self.encoder.fingerprint()}, "
                f"the index {settings.fingerprint}: install the same model files on every node")
        self.settings, self.known, self.batch_size = settings, known, batch_size
        self.attempts, self.build, self.max_attempts = attempts, build, max_attempts

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import ray

        out = []
        for row in batch.to_pylist():
            payload, seconds = b"", 0.0
            if row["state"] == "encode":
                deaths = ray.get(self.attempts.start.remote(self.build, row["name"]))
                if deaths >= self.max_attempts:
                    ids = json.loads(row["ids"])
                    raise ShardError(f"shard {row['name']} (documents {ids[0]!r} .. {ids[-1]!r}): its worker died "
                                     f"{deaths} time(s) while encoding it (out of memory? a document too long "
                                     "for the device?)")
                started = time.perf_counter()
                docs = [Document(**d) for d in json.loads(row["documents"])]
                skipped = [tuple(s) for s in json.loads(row["skipped"])]
                shard = encode_shard(self.encoder, docs, skipped, self.settings, known=self.known,
                                     batch_size=self.batch_size)
                payload, seconds = shard_bytes(shard), time.perf_counter() - started
                ray.get(self.attempts.finish.remote(self.build, row["name"]))
            out.append({**row, "documents": "", "payload": payload, "seconds": seconds})
        return pa.Table.from_pylist(out)


# ---------------------------------------------------------------------------- the build
def _stored_shards(directory: Path, committed: set[str], settings: ShardSettings) -> set[str]:
    """Names of whole shard files left by an earlier run; committed and broken ones are deleted."""
    stored = set()
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        name = path.name.removesuffix(SUFFIX)
        if name in committed:
            path.unlink()
            continue
        try:
            read_shard(path, settings)
        except ShardError as exc:
            log.warning("%s; deleting it, its documents are encoded again", exc)
            path.unlink()
            continue
        stored.add(name)
    return stored


def count_sources(sources: Sequence[str | Path], fields: RecordFields | None = None) -> int:
    """`ingest.count_documents` plus the rows of the Parquet files among `sources` (for progress bars)."""
    import pyarrow.parquet as pq

    parquet = [path for path, _ in expand_sources(sources, suffixes=(PARQUET,)) if path.suffix.lower() == PARQUET]
    return count_documents(sources, fields) + sum(pq.ParquetFile(path).metadata.num_rows for path in parquet)


def _datasets(ray: Any, sources: Sequence[str | Path], plan: _Plan) -> tuple[list[Any], int]:
    """Shard rows of `sources`: one dataset for the files the local readers parse, one for the Parquet
    files (run one after the other: a union would interleave them), and how many Parquet files there are."""
    files = expand_sources(sources, suffixes=(*SUPPORTED, PARQUET))
    parquet = [str(path) for path, _ in files if path.suffix.lower() == PARQUET]
    others = [{"path": str(path), "doc_id": doc_id} for path, doc_id in files if path.suffix.lower() != PARQUET]
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    parts = []
    if others:
        parts.append(ray.data.from_items(others).flat_map(
            _read_file_shards, fn_kwargs={"plan": plan}, num_cpus=0, label_selector=here,
            compute=ray.data.TaskPoolStrategy(size=min(2, len(others)))))
    if parquet:
        parts.append(ray.data.read_parquet(parquet, include_paths=True, num_cpus=0, concurrency=2,
                                           label_selector=here).map_batches(
            _read_parquet_shards, fn_kwargs={"plan": plan}, batch_size=plan.shard_docs, batch_format="pyarrow",
            num_cpus=0, label_selector=here))
    if not parts:
        raise SourceError(f"no readable files in {', '.join(map(str, sources))} (supported: "
                          f"{', '.join((*SUPPORTED, PARQUET))})")
    return parts, len(parquet)


@contextlib.contextmanager
def _data_settings(ray: Any) -> Iterator[None]:
    """Ray Data as a build needs it, restored afterwards: output in input order (commits in corpus
    order give the local engine's chunk ids), workers' own exceptions, no progress bars or chatter."""
    context = ray.data.DataContext.get_current()
    wanted = {"enable_progress_bars": False, "print_on_execution_start": False, "raise_original_map_exception": True}
    saved = {name: getattr(context, name) for name in wanted if hasattr(context, name)}
    order, logger = context.execution_options.preserve_order, logging.getLogger("ray.data")
    level = logger.level
    for name in saved:
        setattr(context, name, wanted[name])
    context.execution_options.preserve_order = True
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        context.execution_options.preserve_order = order
        logger.setLevel(level)


def _ray_failure(exc: Exception, stats: RayBuildStats) -> IndexerError:
    """A clear error for a failed Ray step: the worker's own `IndexerError` if it raised one, and how to resume."""
    done = (f"{stats.shards_encoded + stats.shards_reused} shards were committed and are kept; "
            "rerun the same command to resume")
    worker_error, link, seen = None, exc, set()
    while link is not None and id(link) not in seen:  # Ray wraps a worker's exception, maybe twice
        seen.add(id(link))
        if isinstance(link, IndexerError):
            worker_error = link
        link = getattr(link, "cause", None) or link.__cause__
    if worker_error is not None:  # its own message: Ray appends its retry advice after the first line
        message = str(worker_error.args[0] if worker_error.args else worker_error).strip().splitlines()
        return type(worker_error)(f"{message[0] if message else type(worker_error).__name__} ({done})")
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return IndexerError(f"the Ray encode step failed ({type(exc).__name__}: {lines[-1] if lines else ''}); {done}")


def build_with_ray(indexer: Indexer, sources: Sequence[str | Path], *, fields: RecordFields | None = None,
                   options: RayOptions = RayOptions(), load_encoder: Callable[[], Any] | None = None,
                   max_chars: int = DEFAULT_MAX_CHARS, progress: Callable[[int], None] | None = None) -> RayBuildStats:
    """Read, chunk and encode `sources` on Ray and commit them to `indexer`, resumably (module doc).

    `load_encoder` runs once in each actor and must give an encoder with the index's fingerprint
    (default: `EncoderLoader`: the driver's model, adapters and settings). `progress(n)` is told
    how many records each shard held, as shards are committed. Returns what was done.
    """
    settings = ShardSettings.of(indexer)
    directory = indexer.path / SHARD_DIR
    stats = RayBuildStats()
    committed = indexer.committed_shards()
    plan = _Plan(fields or RecordFields(), settings, options.shard_docs, max_chars, frozenset(committed),
                 frozenset(_stored_shards(directory, committed, settings)))
    with ray_session(options) as ray, _data_settings(ray):
        _check_resources(ray, options)
        attempts = ray.remote(num_cpus=0)(_Attempts).options(name="l2v-shard-attempts", get_if_exists=True).remote()
        build = uuid.uuid4().hex
        try:
            gpu = options.num_gpus_per_worker > 0
            known = indexed_keys(indexer)
            resources = {"num_gpus": options.num_gpus_per_worker} if gpu else {"num_cpus": options.num_cpus_per_worker}
            datasets, stats.files = _datasets(ray, sources, plan)
            seen: set[str] = set()
            for dataset in datasets:
                encoded = dataset.map_batches(
                    ShardEncoder, batch_size=1, batch_format="pyarrow",
                    compute=ray.data.ActorPoolStrategy(size=options.concurrency),
                    fn_constructor_kwargs={"load_encoder": load_encoder or EncoderLoader(indexer.encoder.spec()),
                                           "settings": settings, "known": known, "batch_size": indexer.batch_size,
                                           "threads": None if gpu else max(1, int(options.num_cpus_per_worker)),
                                           "attempts": attempts, "build": build,
                                           "max_attempts": options.max_attempts},
                    **resources)
                _commit_stream(indexer, iter(encoded.iter_rows()), directory, seen, stats, progress)
        finally:
            attempts.forget.remote(build)
    with contextlib.suppress(OSError):
        directory.rmdir()  # empty after a complete build
    return stats


def _commit_stream(indexer: Indexer, rows: Iterator[dict[str, Any]], directory: Path, seen: set[str],
                   stats: RayBuildStats, progress: Callable[[int], None] | None) -> None:
    """Commit shard rows as they arrive (in corpus order): skip committed ones, reuse stored ones, write
    and commit encoded ones; each shard file is deleted once its shard is committed."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # raised by Ray: a worker's error, a lost node, ...
            raise _ray_failure(exc, stats) from exc
        ids = json.loads(row["ids"])
        skipped = [tuple(s) for s in json.loads(row["skipped"])]
        stats.files += row["files"]
        stats.documents += row["read"]
        if row["state"] == "committed":
            seen.update(ids)
            stats.unchanged += len(ids)
            stats.shards_skipped += 1
            stats.skipped += skipped
        else:
            started = time.perf_counter()
            if row["state"] == "stored":
                path = shard_path(directory, row["name"])
                try:
                    shard = read_shard(path, ShardSettings.of(indexer))
                except ShardError as exc:
                    path.unlink(missing_ok=True)
                    raise ShardError(f"{exc}; nothing of it was committed and the file was deleted") from None
                stats.shards_reused += 1
            else:
                path = write_shard(directory, row["name"], row["payload"])
                shard = parse_shard(row["payload"], path)
                stats.shards_encoded += 1
                stats.encode_seconds += row["seconds"]
            commit_shard(indexer, shard, seen, stats)
            path.unlink()
            stats.store_seconds += time.perf_counter() - started
        if progress is not None:
            progress(row["read"])
