"""Encoding speed of `LLM2VecEncoder` against the reference `llm2vec` 0.2.3, same model and inputs.

    .venv/bin/python benchmarks/encode_speed.py --quick   # a few minutes
    .venv/bin/python benchmarks/encode_speed.py           # more passages and 1,000 queries
    .venv/bin/python benchmarks/encode_speed.py --smoke   # a handful of texts: checks it runs

SmolLM2-135M (bidirectional, mean pooling, max_length 512 / doc_max_length 400), batch size 32,
2 torch threads on both sides; the reference runs in its own venv (benchmarks/_reference.py).
Cases: (a) ~200-token scifact passages, fp32; (b) short scifact queries (5-20 tokens), fp32;
(c) our opt-in `dtype="bfloat16"` on the passages against the reference's fp32, with the
per-row cosine of our bf16 rows to our fp32 rows. Reported: passages/s, tokens/s (tokens fed
to the model, special tokens included, padding excluded), achieved GFLOP/s = 2 x non-embedding
parameters x tokens / s, its share of this machine's measured fp32 matmul peak (2 threads), and
our/reference ratios. Results go to benchmarks/results/encode_speed[_quick].json
(--smoke: benchmarks/.work/smoke/, never mistaken for a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, RESULTS, machine_info, write_result  # noqa: E402
from _reference import prepare_model_dir, row_cosines, run_reference, write_inputs  # noqa: E402

from indexer.llm2vec import LLM2VecEncoder, resolve_model  # noqa: E402

SMOKE = RESULTS.parent / ".work" / "smoke"
THREADS = 2
BATCH_SIZE = 32
TARGETS = {"passages_fp32": 1.1, "queries_fp32": 2.0, "passages_bf16": 2.0}
BF16_MIN_COSINE = 0.999


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 3.0) -> float:
    """Best GFLOP/s of an n x n matmul on the current thread setting, over `seconds`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def load_texts(path: Path, field: str = "text", title: bool = False) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [f"{r['title']} {r[field]}".strip() if title else r[field] for r in rows]


def select_by_tokens(texts: Sequence[str], tokenizer: Any, low: int, high: int, n: int) -> list[str]:
    """The first `n` texts whose token count (no special tokens) lies in [low, high]."""
    out = []
    for start in range(0, len(texts), 256):
        chunk = list(texts[start : start + 256])
        lengths = [len(ids) for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]]
        out += [t for t, length in zip(chunk, lengths) if low <= length <= high]
        if len(out) >= n:
            return out[:n]
    raise ValueError(f"only {len(out)} texts have {low}-{high} tokens; {n} wanted")


def time_ours(encoder: LLM2VecEncoder, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-`repeats` seconds to encode `texts` (after a warm-up batch), and the rows."""
    encoder.encode(texts[:4], batch_size=BATCH_SIZE)
    best, rows = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        rows = encoder.encode(texts, batch_size=BATCH_SIZE)
        best = min(best, time.perf_counter() - start)
    return best, rows


def rates(n: int, tokens: int, seconds: float, flop_per_token: float, peak: float) -> dict[str, float]:
    gflops = flop_per_token * tokens / seconds / 1e9
    return {"seconds": round(seconds, 3), "passages_per_s": round(n / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "gflops": round(gflops, 2),
            "pct_of_fp32_peak": round(100 * gflops / peak, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact",
                        help="BEIR-layout SciFact directory (corpus.jsonl, queries.jsonl) [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="32 passages and 200 queries, one timing each")
    parser.add_argument("--smoke", action="store_true",
                        help="2 passages, 4 queries, 1 bf16 passage: checks the script runs; its numbers mean nothing")
    parser.add_argument("--passages", type=int, help="number of ~200-token passages (default 32 quick / 256)")
    parser.add_argument("--queries", type=int, help="number of short queries (default 200 quick / 1000)")
    parser.add_argument("--bf16-passages", type=int,
                        help="passages for the bf16 case (default 4 quick / 32): bf16 is slow on CPUs without "
                             "native bf16 matmul, so it is timed on the first passages only")
    parser.add_argument("--repeats", type=int, help="timings per case, best kept (default 1 quick / 2)")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/encode_speed[_quick].json)")
    args = parser.parse_args(argv)
    n_passages = args.passages or (2 if args.smoke else 32 if args.quick else 256)
    n_queries = args.queries or (4 if args.smoke else 200 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick or args.smoke else 2)
    n_bf16 = args.bf16_passages or (1 if args.smoke else 4 if args.quick else 32)
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1):
        print(f"WARNING: load average {load_before[0]:.1f} > {os.cpu_count()} cores: other processes share the CPU, "
              f"so {THREADS}-thread timings (and the ratios, taken minutes apart) are unreliable")

    peak = matmul_peak(torch.float32)
    peak_bf16 = matmul_peak(torch.bfloat16, n=256, seconds=2.0)
    print(f"matmul peak at {THREADS} threads: fp32 {peak:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s")

    model_dir = resolve_model("smollm2-135m").location
    ours = LLM2VecEncoder.from_pretrained("smollm2-135m", pooling="mean", dtype="float32", device="cpu")
    tokenizer = ours.tokenizer
    non_embedding = sum(p.numel() for n, p in ours.model.named_parameters() if "embed_tokens" not in n)
    flop_per_token = 2.0 * non_embedding
    passages = select_by_tokens(load_texts(args.data / "corpus.jsonl", title=True), tokenizer, 170, 230, n_passages)
    queries = select_by_tokens(load_texts(args.data / "queries.jsonl"), tokenizer, 5, 20, n_queries)
    inputs = {"passages": passages, "queries": queries}
    tokens = {name: sum(len(item.input_ids) for item in ours.tokenize(texts)) for name, texts in inputs.items()}
    tokens["passages_bf16"] = sum(len(item.input_ids) for item in ours.tokenize(passages[:n_bf16]))
    print(f"{len(passages)} passages ({tokens['passages']} tokens), {len(queries)} queries ({tokens['queries']} tokens)")

    seconds: dict[str, float] = {}
    rows: dict[str, np.ndarray] = {}
    for name, texts in inputs.items():
        seconds[f"ours_{name}_fp32"], rows[f"ours_{name}_fp32"] = time_ours(ours, texts, repeats)
        print(f"ours fp32 {name}: {seconds[f'ours_{name}_fp32']:.1f}s")
    del ours
    fast = LLM2VecEncoder.from_pretrained("smollm2-135m", pooling="mean", dtype="bfloat16", device="cpu")
    seconds["ours_passages_bf16"], rows["ours_passages_bf16"] = time_ours(fast, passages[:n_bf16], 1)
    print(f"ours bf16 passages: {seconds['ours_passages_bf16']:.1f}s")
    del fast

    with tempfile.TemporaryDirectory(prefix="l2v-speed-") as tmp:
        ref_dir = prepare_model_dir(model_dir, Path(tmp) / "ref-smollm2")
        runs = []
        for name, texts in inputs.items():
            write_inputs(Path(tmp) / f"{name}.jsonl", [(None, t) for t in texts])
            runs.append({"inputs": str(Path(tmp) / f"{name}.jsonl"), "batch_size": BATCH_SIZE, "warmup": 4,
                         "repeats": repeats, "output": str(Path(tmp) / f"{name}.npy")})
        report = run_reference({"threads": THREADS, "jobs": [{
            "model": str(ref_dir), "bidirectional": True, "pooling_mode": "mean", "max_length": 512,
            "doc_max_length": 400, "runs": runs}]})
        for run, name in zip(report["jobs"][0]["runs"], inputs):
            seconds[f"reference_{name}_fp32"] = min(run["seconds"])
            rows[f"reference_{name}_fp32"] = np.load(Path(tmp) / f"{name}.npy")
            print(f"reference fp32 {name}: {seconds[f'reference_{name}_fp32']:.1f}s")

    cases = {}
    for case, (name, ours_key, n, tok) in {
        "passages_fp32": ("passages", "ours_passages_fp32", len(passages), tokens["passages"]),
        "queries_fp32": ("queries", "ours_queries_fp32", len(queries), tokens["queries"]),
        "passages_bf16": ("passages", "ours_passages_bf16", n_bf16, tokens["passages_bf16"]),
    }.items():
        ref_key = f"reference_{name}_fp32"
        ours_rates = rates(n, tok, seconds[ours_key], flop_per_token, peak)
        ref_rates = rates(len(inputs[name]), tokens[name], seconds[ref_key], flop_per_token, peak)
        cases[case] = {
            "n": n, "tokens": tok, "batch_size": BATCH_SIZE, "ours": ours_rates, "reference_fp32": ref_rates,
            # a rate ratio: the bf16 case times only the first passages of the same set
            "speedup": round(ours_rates["tokens_per_s"] / ref_rates["tokens_per_s"], 3),
            "target": TARGETS[case],
            "min_cosine_to_reference": round(float(row_cosines(rows[ours_key], rows[ref_key][:n]).min()), 6),
        }
        cases[case]["meets_target"] = cases[case]["speedup"] >= TARGETS[case]
    bf16_cos = row_cosines(rows["ours_passages_bf16"], rows["ours_passages_fp32"][:n_bf16])
    cases["passages_bf16"]["min_cosine_to_ours_fp32"] = round(float(bf16_cos.min()), 6)
    cases["passages_bf16"]["cosine_ok"] = bool(bf16_cos.min() >= BF16_MIN_COSINE)

    print("\n| case | side | passages/s | tokens/s | GFLOP/s | % fp32 peak | speedup (target) | min cos |")
    print("|---|---|---|---|---|---|---|---|")
    for case, c in cases.items():
        for side in ("ours", "reference_fp32"):
            r = c[side]
            extra = (f"{c['speedup']:.2f}x ({c['target']}x) {'OK' if c['meets_target'] else 'MISSED'}"
                     if side == "ours" else "")
            cos = c.get("min_cosine_to_ours_fp32", c["min_cosine_to_reference"]) if side == "ours" else ""
            print(f"| {case} | {side} | {r['passages_per_s']} | {r['tokens_per_s']} | {r['gflops']} | "
                  f"{r['pct_of_fp32_peak']} | {extra} | {cos} |")

    output = args.output or (SMOKE / "encode_speed.json" if args.smoke else
                             RESULTS / f"encode_speed{'_quick' if args.quick else ''}.json")
    written = write_result("encode_speed", {
        # the standard machine header (load average at the end), plus what this benchmark measured of the CPU
        "machine": {**machine_info(), "fp32_matmul_peak_gflops": round(peak, 1),
                    "bf16_matmul_peak_gflops": round(peak_bf16, 1), "load_average_before": list(load_before)},
        "model": {"name": "smollm2-135m", "non_embedding_params": non_embedding, "pooling": "mean",
                  "bidirectional": True, "max_length": 512, "doc_max_length": 400},
        "quick": args.quick, "smoke": args.smoke, "repeats": repeats,
        "reference_load_s": round(report["jobs"][0]["load_s"], 2), "cases": cases,
    }, output)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
