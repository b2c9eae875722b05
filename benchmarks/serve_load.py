"""Load on `l2v serve` over loopback against the bare encoder in the same run.

    .venv/bin/python benchmarks/serve_load.py --quick    # default model, 200 requests per phase
    .venv/bin/python benchmarks/serve_load.py            # default model, 1000 requests per phase
    .venv/bin/python benchmarks/serve_load.py --smoke    # tiny random model, 20 requests: checks it runs

The server is a real `l2v serve` subprocess on 127.0.0.1 over an index of
examples/sample_corpus.jsonl (built once under benchmarks/.work/serve_load/); this process is the
client (httpx, one keep-alive connection per client thread) and measures the baselines itself,
never while the server works. Queries are SciFact claims (`--data`; short: 5-20 tokens) or,
without them, the sample corpus' titles, encoded with the scifact task instruction.

(a) idle: one request at a time, p50 of POST /v1/embeddings and /v1/search (one query each)
    against the p50 of `encoder.encode([query], instruction)` (target: embeddings p50 <= 1.5x);
(b) 16 concurrent clients sending single queries to /v1/embeddings: requests/s against offline
    `encode(queries, batch_size=32)` queries/s (target >= 0.7x), p50/p99, errors (target 0), and
    the mean texts per forward pass from the server's /metrics;
(c) the same for /v1/search.
Each phase stops after its request count or `--seconds`, whichever comes first.
Results: benchmarks/results/serve_load[_quick].json (--smoke: benchmarks/.work/smoke/serve_load.json).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, RESULTS, ROOT, read_jsonl, write_result  # noqa: E402

from indexer import Indexer, LLM2VecEncoder  # noqa: E402
from retriever import get_task  # noqa: E402

WORK = RESULTS.parent / ".work" / "serve_load"
SMOKE = RESULTS.parent / ".work" / "smoke"
SAMPLE = ROOT / "examples" / "sample_corpus.jsonl"
MODEL = "smollm2-135m"
TINY = "tiny"  # --model value for the tiny random Llama of tests/tiny_models.py
TASK = "scifact"
K = 10
CLIENTS = 16
# (requests per idle phase, requests per concurrent phase, seconds per phase) per mode
SIZES = {"full": (300, 1000, 300.0), "quick": (100, 200, 120.0), "smoke": (10, 20, 30.0)}
TARGETS = {"idle_p50_ratio_max": 1.5, "concurrent_throughput_ratio_min": 0.7, "errors": 0}


def load_queries(data: Path, n: int) -> tuple[list[str], str]:
    if (data / "queries.jsonl").is_file():
        return [row["text"] for row in read_jsonl(data / "queries.jsonl", n)], str(data / "queries.jsonl")
    titles = [row["title"] for row in read_jsonl(SAMPLE)]
    return [titles[i % len(titles)] for i in range(n)], f"{SAMPLE.relative_to(ROOT)} titles"


def build_index(encoder: LLM2VecEncoder, work: Path) -> Path:
    """The sample corpus, encoded once per model (a rerun skips the committed documents)."""
    path = work / "serve-load-index"
    docs = [{"id": row["_id"], "text": f"{row['title']}. {row['text']}", "metadata": {"topic": row.get("topic", "")}}
            for row in read_jsonl(SAMPLE)]
    with Indexer(path, encoder, default_task=TASK) as indexer:
        indexer.add_documents(docs)
    return path


def percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    array = np.asarray(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(array, 50)), 2), "p99_ms": round(float(np.percentile(array, 99)), 2),
            "mean_ms": round(float(array.mean()), 2)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, port: int, threads: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop("L2V_API_KEY", None)
    command = [sys.executable, "-c", "from retriever.cli import main; main()", "serve", str(index),
               "--host", "127.0.0.1", "--port", str(port), "--max-batch", str(max_batch),
               "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(process: subprocess.Popen, url: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"l2v serve did not become ready:\n{process.communicate()[1][-3000:]}")


def batch_stats(url: str) -> tuple[float, float]:
    """(forward passes, texts) so far, from the server's l2v_batch_size histogram."""
    count = total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == "l2v_batch_size":
            for sample in family.samples:
                count += sample.value if sample.name.endswith("_count") else 0.0
                total += sample.value if sample.name.endswith("_sum") else 0.0
    return count, total


def request_body(route: str, index: str, query: str) -> dict[str, Any]:
    if route == "embeddings":
        return {"model": index, "input": query, "task": TASK, "encoding_format": "base64"}
    return {"index": index, "query": query, "k": K, "task": TASK}


def idle(url: str, route: str, index: str, queries: list[str], n: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        for query in queries[:3]:  # warm-up: connection, first forward
            client.post(f"/v1/{route}", json=request_body(route, index, query))
        for i in range(n):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            response = client.post(f"/v1/{route}", json=request_body(route, index, queries[i % len(queries)]))
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
    return {"requests": len(latencies), "errors": errors, **percentiles(latencies)}


def concurrent(url: str, route: str, index: str, queries: list[str], n: int, seconds: float) -> dict[str, Any]:
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        nonlocal issued
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= n:
                        return
                    i = issued
                    issued += 1
                started = time.perf_counter()
                try:
                    response = client.post(f"/v1/{route}", json=request_body(route, index, queries[i % len(queries)]))
                    ok = response.status_code == 200
                    detail = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        failures.append(detail)

    passes_before, texts_before = batch_stats(url)
    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    passes_after, texts_after = batch_stats(url)
    passes = passes_after - passes_before
    return {"clients": CLIENTS, "requests": len(latencies), "errors": len(failures), "error_samples": failures[:3],
            "seconds": round(wall, 3), "requests_per_second": round(len(latencies) / wall, 2),
            "mean_texts_per_forward": round((texts_after - texts_before) / passes, 2) if passes else None,
            **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact",
                        help="SciFact directory whose queries.jsonl gives the queries [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="100 idle and 200 concurrent requests per phase")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, 10 + 20 requests: checks it runs")
    parser.add_argument("--model", help=f"model to serve [default: {MODEL}; --smoke: {TINY}, the tiny random Llama]")
    parser.add_argument("--seconds", type=float, help="cap per phase [default: 300, --quick 120, --smoke 30]")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, here and in the server (default 2)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/serve_load[_quick].json)")
    args = parser.parse_args()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_idle, n_concurrent, seconds = SIZES[mode]
    seconds = args.seconds or seconds
    torch.set_num_threads(args.threads)
    model = args.model or (TINY if args.smoke else MODEL)
    work = (SMOKE / "serve_load") if args.smoke else WORK
    model_name = model
    if model == TINY:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import build_model_dir

        model = str(build_model_dir(work / "tiny-model"))
        model_name = "tiny random Llama (tests/tiny_models.py: hidden 32, 2 layers, 400-token BPE)"
    work = work / model_name.split()[0].replace("/", "_").replace(":", "_")
    work.mkdir(parents=True, exist_ok=True)

    encoder = LLM2VecEncoder.from_pretrained(model)
    queries, query_source = load_queries(args.data, max(n_idle, n_concurrent))
    instruction = get_task(TASK).instruction
    index = build_index(encoder, work)

    # baselines, measured before the server starts (no contention)
    for query in queries[:3]:
        encoder.encode([query], instruction, normalize=True)
    bare = []
    for query in queries[:n_idle]:
        started = time.perf_counter()
        encoder.encode([query], instruction, normalize=True)
        bare.append(time.perf_counter() - started)
    offline_queries = queries[:n_concurrent]
    started = time.perf_counter()
    encoder.encode(offline_queries, instruction, batch_size=32, normalize=True)
    offline_qps = len(offline_queries) / (time.perf_counter() - started)
    bare_idle = percentiles(bare)
    del encoder

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(index, port, args.threads, args.max_batch, args.max_wait_ms)
    try:
        wait_ready(process, url)
        name = index.name
        idle_results = {route: idle(url, route, name, queries, n_idle, seconds) for route in ("embeddings", "search")}
        load_results = {route: concurrent(url, route, name, queries, n_concurrent, seconds)
                        for route in ("embeddings", "search")}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()

    for result in idle_results.values():
        result["p50_ratio_over_bare_encode"] = round(result["p50_ms"] / bare_idle["p50_ms"], 3)
    for result in load_results.values():
        result["throughput_ratio_over_offline_batch32"] = round(result["requests_per_second"] / offline_qps, 3)
    results = {
        "mode": mode, "quick": args.quick, "smoke": args.smoke, "model": model_name, "threads": args.threads,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "task": TASK, "k": K, "queries": query_source,
        "targets": TARGETS,
        "idle": {"bare_encode": bare_idle, **idle_results},
        "concurrent": {"offline_encode_batch32_queries_per_second": round(offline_qps, 2), **load_results},
        "targets_met": {
            "idle_embeddings_p50": idle_results["embeddings"]["p50_ratio_over_bare_encode"]
            <= TARGETS["idle_p50_ratio_max"],
            "concurrent_embeddings_throughput": load_results["embeddings"]["throughput_ratio_over_offline_batch32"]
            >= TARGETS["concurrent_throughput_ratio_min"],
            "concurrent_search_throughput": load_results["search"]["throughput_ratio_over_offline_batch32"]
            >= TARGETS["concurrent_throughput_ratio_min"],
            "no_errors": all(r["errors"] == 0 for r in [*idle_results.values(), *load_results.values()]),
        },
    }
    print(json.dumps({k: results[k] for k in ("idle", "concurrent", "targets_met")}, indent=1), file=sys.stderr)
    default = SMOKE / "serve_load.json" if args.smoke else RESULTS / f"serve_load{'_quick' if args.quick else ''}.json"
    print(f"wrote {write_result('serve_load', results, args.output or default)}")


if __name__ == "__main__":
    main()
