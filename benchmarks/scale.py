"""Scale-out: the Ray engine's overhead against the local engine, and a sizing table.

Builds the same corpus prefix with both engines on this machine, same model, same threads
(`--threads` torch threads locally; one Ray actor with as many CPUs), at two corpus sizes, so
the Ray cost splits into a fixed part (actor start, the model loaded again in the actor) and a
per-document part. Ray is started once beforehand (`ray_init_s`, paid once per session or cluster)
and warmed up by a 4-document build (`ray_first_build_s`), so both sizes pay the same per-build cost.

The sizing table gives hours to index 1M, 10M and 100M documents with 1..256 workers:
`measured` rows from this run's docs/s per Ray worker (CPU, this machine, this run's model);
`smollm2-135m` CPU rows derived from benchmarks/results/encode_speed_quick.json (passages/s
of the default model on this machine, same code); GPU rows are an ESTIMATE, not a measurement:
docs/s per GPU = MFU x peak FLOP/s / FLOPs per document, the FLOPs per document taken from that
same measured CPU run (GFLOP/s divided by passages/s). Workers scale linearly in the table (Ray
Data's actor pool has no shared state but the driver); `writer_bound` is the single writer's
measured commit rate (SQLite + FAISS), the ceiling no number of workers lifts.

    .venv/bin/python benchmarks/scale.py --quick      # tiny random model, 16 and 64 docs: a few minutes
    .venv/bin/python benchmarks/scale.py              # smollm2-135m, 64 and 256 SciFact docs (hours on 2 cores)
Results: benchmarks/results/scale.json (`quick` and `model` say which run wrote it)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import DEFAULT_DATA, RESULTS, files_sha256, write_result  # noqa: E402

DEFAULT_CORPUS = DEFAULT_DATA / "scifact" / "corpus.jsonl"
TINY = "tiny"  # --model value for the tiny random Llama of tests/tiny_models.py
CORPUS_SIZES = (1_000_000, 10_000_000, 100_000_000)
WORKERS = (1, 8, 64, 256)
H100_BF16_TFLOPS = 989.0  # dense bf16 peak, NVIDIA H100 SXM datasheet


def prefix(corpus: Path, n: int, out: Path) -> Path:
    """The first `n` records of a JSONL corpus, as a file of their own."""
    with corpus.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i == n:
                break
            dst.write(line)
    return out


def build_local(index: Path, model: str, corpus: Path, chunking: dict[str, int]) -> dict[str, Any]:
    from indexer import Indexer
    from indexer.ingest import iter_documents

    started = time.perf_counter()
    with Indexer(index, model=model, **chunking) as indexer:
        loaded = time.perf_counter()
        stats = indexer.add_documents(iter_documents([corpus]), errors="skip")
    done = time.perf_counter()
    return {"seconds": round(done - started, 3), "load_s": round(loaded - started, 3), "docs": stats.added,
            "chunks": stats.chunks, "encode_s": round(stats.encode_seconds, 3),
            "store_s": round(stats.store_seconds, 3)}


def build_ray(index: Path, model: str, corpus: Path, chunking: dict[str, int], threads: int) -> dict[str, Any]:
    from indexer import Indexer, RayOptions, build_with_ray

    started = time.perf_counter()
    with Indexer(index, model=model, **chunking) as indexer:
        loaded = time.perf_counter()
        stats = build_with_ray(indexer, [corpus], options=RayOptions(concurrency=1, num_cpus_per_worker=threads,
                                                                     shard_docs=16))
    done = time.perf_counter()
    return {"seconds": round(done - started, 3), "load_s": round(loaded - started, 3), "docs": stats.added,
            "chunks": stats.chunks, "shards": stats.shards_encoded, "encode_s": round(stats.encode_seconds, 3),
            "store_s": round(stats.store_seconds, 3)}


def same_index(a: Path, b: Path) -> dict[str, Any]:
    """Whether both builds hold the same chunk rows, and the largest vector difference."""
    import numpy as np

    from indexer import IndexStore

    with IndexStore.open(a) as x, IndexStore.open(b) as y:
        ids = x.chunk_ids_where("1").tolist()
        rows_equal = x.get_chunks(ids) == y.get_chunks(ids) and sorted(y.chunk_ids_where("1").tolist()) == sorted(ids)
        diff = float(np.abs(x.reconstruct(ids) - y.reconstruct(ids)).max()) if rows_equal and ids else None
    return {"chunk_rows_equal": rows_equal, "max_abs_vector_diff": diff}


def hours(docs: int, docs_per_s: float) -> float:
    return round(docs / docs_per_s / 3600, 3) if docs_per_s > 0 else math.inf


def sizing(bases: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """Rows {docs, workers, hours, ...} for each basis: (docs/s per worker, docs/s the one writer commits)."""
    rows = []
    for basis, (rate, writer) in bases.items():
        for docs in CORPUS_SIZES:
            for workers in WORKERS:
                rows.append({"docs": docs, "workers": workers, "hours": hours(docs, min(rate * workers, writer)),
                             "basis": basis, "docs_per_s_per_worker": round(rate, 3),
                             "writer_bound": rate * workers > writer})
    return rows


def smollm2_rates(gpu_tflops: float, gpu_mfu: float) -> dict[str, Any]:
    """SmolLM2-135M docs/s on this CPU (measured by encode_speed), on one GPU (estimated from it), and
    the writer's bulk commit rate of 576-d one-chunk documents (measured by index_speed)."""
    encode, index = RESULTS / "encode_speed_quick.json", RESULTS / "index_speed-quick.json"
    if not (encode.is_file() and index.is_file()):
        return {}
    result = json.loads(encode.read_text())
    measured, cpu_threads = result["cases"]["passages_fp32"]["ours"], result["machine"]["threads"]
    gflop_per_doc = measured["gflops"] / measured["passages_per_s"]
    storage = json.loads(index.read_text())["storage"][-1]
    return {"sources": [str(p.relative_to(RESULTS.parent.parent)) for p in (encode, index)],
            "cpu_threads": cpu_threads, "cpu_docs_per_s": measured["passages_per_s"],
            "gflop_per_doc": round(gflop_per_doc, 2), "gpu_peak_tflops": gpu_tflops, "gpu_mfu": gpu_mfu,
            "gpu_docs_per_s": round(gpu_mfu * gpu_tflops * 1e3 / gflop_per_doc, 1),
            "writer_docs_per_s": round(1000 / storage["ours"]["bulk_add_per_doc_ms"], 1),
            "writer_measured_at_vectors": storage["vectors"],
            "derivation": f"GPU docs/s = MFU {gpu_mfu} x {gpu_tflops:g} TFLOP/s / {gflop_per_doc:.1f} GFLOP per "
                          "document, the GFLOP per document being SmolLM2-135M's measured fp32 GFLOP/s over its "
                          "passages/s on SciFact on this CPU: an ESTIMATE, not a measurement; CPU docs/s per "
                          "thread = measured passages/s / threads of that run"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="BEIR-style corpus.jsonl")
    parser.add_argument("--quick", action="store_true", help="tiny random model, 16 and 64 documents")
    parser.add_argument("--model", help=f"model of both builds (default: {TINY!r} with --quick, else smollm2-135m)")
    parser.add_argument("--docs", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help="corpus prefixes to build (default 16 64 quick / 64 256)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per engine (local) / per Ray worker")
    parser.add_argument("--gpu-tflops", type=float, default=H100_BF16_TFLOPS, help="GPU peak for the estimate")
    parser.add_argument("--gpu-mfu", type=float, default=0.2, help="assumed fraction of that peak reached")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/scale.json)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import ray
    import torch

    torch.set_num_threads(args.threads)
    model = args.model or (TINY if args.quick else "smollm2-135m")
    sizes = args.docs or ((16, 64) if args.quick else (64, 256))
    work = Path(tempfile.mkdtemp(prefix="l2v-scale-"))
    try:
        model_name = model
        chunking: dict[str, int] = {"batch_size": 32}
        if model == TINY:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from tiny_models import build_model_dir

            model = str(build_model_dir(work / "tiny-model"))
            model_name = "tiny random Llama (tests/tiny_models.py: hidden 32, 2 layers, 400-token BPE)"
            chunking.update(chunk_tokens=128, overlap=16)
        started = time.perf_counter()
        ray.init(num_cpus=args.threads + 1, include_dashboard=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - started
        # the first build in a session also starts Ray's worker processes: measured apart, as a warm-up
        warmup = build_ray(work / "warmup", model, prefix(args.corpus, 4, work / "warmup.jsonl"), chunking,
                           args.threads)
        runs = []
        for n in sizes:
            corpus = prefix(args.corpus, n, work / f"corpus-{n}.jsonl")
            local = build_local(work / f"local-{n}", model, corpus, chunking)
            on_ray = build_ray(work / f"ray-{n}", model, corpus, chunking, args.threads)
            ratio = round(on_ray["seconds"] / local["seconds"], 2)
            runs.append({"docs": n, "local": local, "ray": on_ray, "ratio": ratio,
                         **same_index(work / f"local-{n}", work / f"ray-{n}")})
            print(f"{n} docs: local {local['seconds']:.1f}s, ray {on_ray['seconds']:.1f}s "
                  f"({runs[-1]['ratio']}x), same index: {runs[-1]['chunk_rows_equal']}", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    small, large = runs
    per_doc_local = (large["local"]["seconds"] - small["local"]["seconds"]) / (large["docs"] - small["docs"])
    per_doc_ray = (large["ray"]["seconds"] - small["ray"]["seconds"]) / (large["docs"] - small["docs"])
    fixed = small["ray"]["seconds"] - small["local"]["seconds"] - (per_doc_ray - per_doc_local) * small["docs"]
    worker_docs_s = large["docs"] / large["ray"]["encode_s"]
    writer_docs_s = large["docs"] / large["ray"]["store_s"]
    bases = {f"measured: {model_name}, {args.threads} CPU thread(s) per worker": (worker_docs_s, writer_docs_s)}
    smol = smollm2_rates(args.gpu_tflops, args.gpu_mfu)
    if smol:
        bases[f"smollm2-135m, {args.threads} CPU thread(s) per worker (derived from encode_speed)"] = (
            smol["cpu_docs_per_s"] / smol["cpu_threads"] * args.threads, smol["writer_docs_per_s"])
        bases["smollm2-135m, 1 H100 per worker (ESTIMATE, see smollm2_135m.derivation)"] = (
            smol["gpu_docs_per_s"], smol["writer_docs_per_s"])
    payload = {
        "quick": args.quick,
        "model": model_name,
        "corpus": str(args.corpus), "corpus_sha256": files_sha256(args.corpus),
        "threads": args.threads,
        "ray_version": ray.__version__,
        "ray_init_s": round(ray_init_s, 2),
        "ray_first_build_s": {"docs": 4, "seconds": warmup["seconds"],
                              "note": "the session's first build (4 docs): starts Ray's worker processes too"},
        "overhead": {"local_s": large["local"]["seconds"], "ray_s": large["ray"]["seconds"],
                     "ratio": large["ratio"], "docs": large["docs"], "model": model_name, "fixed_s": round(fixed, 2),
                     "per_doc_local_s": round(per_doc_local, 4), "per_doc_ray_s": round(per_doc_ray, 4),
                     "note": "ray_s includes starting the actor and loading the model there a second time "
                             "(the driver loads it too, to fingerprint the index); ray_init_s is extra, once "
                             "per session"},
        "runs": runs,
        "worker_docs_per_s": round(worker_docs_s, 3),
        "writer_docs_per_s": round(writer_docs_s, 1),
        "smollm2_135m": smol,
        "sizing": sizing(bases),
    }
    print(json.dumps({k: payload[k] for k in ("overhead", "worker_docs_per_s", "writer_docs_per_s")}, indent=1))
    print(f"wrote {write_result('scale', payload, args.output)}")


if __name__ == "__main__":
    main()
