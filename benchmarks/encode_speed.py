"""Encoding speed of `LLM2VecEncoder` against the reference `llm2vec` 0.2.3, same model and inputs.

    .venv/bin/python benchmarks/encode_speed.py --quick   # a few minutes
    .venv/bin/python benchmarks/encode_speed.py           # more passages and 1,000 queries
    .venv/bin/python benchmarks/encode_speed.py --smoke   # a handful of texts: checks it runs

SmolLM2-135M (`smollm2-135m:base`, the weights the reference loads too; the shipped adapters,
merged, cost nothing more), bidirectional, mean pooling, max_length 512 / doc_max_length 400,
batch size 32, 2 torch threads on both sides; the reference runs in its own venv
(benchmarks/_reference.py).
Cases: (a) ~200-token scifact passages, fp32; (b) short scifact queries (5-20 tokens), fp32;
(c) our bfloat16 model on the passages (and, on CPUs with native bf16, the queries) against the
reference's fp32, with the per-row cosine of our bf16 rows to our fp32 rows (`--no-bf16` skips
it: on CPUs without native bf16 it runs at about 1.5 GFLOP/s); (d, e) our `precision="int8"` fast
path (ONNX Runtime) on the passages and the queries, with the per-row cosine of its rows to our
fp32 rows.

The two sides alternate, A B A B: each of `--pairs` rounds (at least 3) times ours on every case,
then the reference on every case (a fresh reference process per round; its model load is not
timed). Both see the same machine load, drifting or not, and the figures are medians over the
rounds, with the spread (min, max, (max - min) / median) and the per-round ratios next to them.
Reported: passages/s, tokens/s (tokens fed to the model, special tokens included, padding
excluded), achieved GFLOP/s = 2 x non-embedding parameters x tokens / s, its share of this
machine's measured matmul peak of the same precision (2 threads), the CPU flags, and
our/reference ratios. Results go to benchmarks/results/encode_speed[_quick].json (--smoke:
benchmarks/.work/smoke/, never mistaken for a measurement).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

# Both sides wait for OpenMP work passively, as `l2v` does (retriever/cli.py): spinning threads
# make 2-thread timings swing several-fold whenever another program uses the CPU. Set before torch
# loads here; the reference process inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, RESULTS, cpu_flags, machine_info, spread, write_result  # noqa: E402
from _reference import prepare_model_dir, row_cosines, run_reference, write_inputs  # noqa: E402

from indexer.llm2vec import LLM2VecEncoder, resolve_model  # noqa: E402

SMOKE = RESULTS.parent / ".work" / "smoke"
MODEL = "smollm2-135m:base"  # SmolLM2-135M without adapters, the weights the reference loads; same FLOPs as merged
THREADS = 2
BATCH_SIZE = 32
MIN_PAIRS = 3
TARGETS = {"passages_fp32": 1.3, "queries_fp32": 2.0, "passages_bf16": 2.5, "queries_bf16": 2.0, "passages_int8": 2.5,
           "queries_int8": 2.0}
"""Issue 16: each fast path (bf16 where native, int8) at 2.5x on passages; 2x on queries as for fp32."""
INT8_MIN_COSINE = 0.99
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


def int8_matmul_peak(n: int = 1024, seconds: float = 3.0, threads: int = THREADS) -> float:
    """Best GFLOP/s of an n x n by n x n MatMul quantized the way the int8 path's are (ONNX Runtime
    dynamic int8, per-channel weights), on `threads` threads, over `seconds`."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "peak",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [weight])
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), f"{tmp}/fp32.onnx")
        logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice is for image models
        quantize_dynamic(f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx", per_channel=True, weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(f"{tmp}/int8.onnx", options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((n, n)).astype(np.float32)
    session.run(None, {"x": x})
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {"x": x})
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


def time_ours(encoder: LLM2VecEncoder, texts: list[str]) -> tuple[float, np.ndarray]:
    """Seconds to encode `texts` once, and the rows."""
    start = time.perf_counter()
    rows = encoder.encode(texts, batch_size=BATCH_SIZE)
    return time.perf_counter() - start, rows


def rates(n: int, tokens: int, seconds: float, flop_per_token: float, peak: float, fp32_peak: float) -> dict[str, float]:
    gflops = flop_per_token * tokens / seconds / 1e9
    return {"seconds": round(seconds, 3), "passages_per_s": round(n / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "gflops": round(gflops, 2),
            "pct_of_peak": round(100 * gflops / peak, 1), "pct_of_fp32_peak": round(100 * gflops / fp32_peak, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact",
                        help="BEIR-layout SciFact directory (corpus.jsonl, queries.jsonl) [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="32 passages and 200 queries")
    parser.add_argument("--smoke", action="store_true",
                        help="2 passages, 4 queries, 1 bf16 passage: checks the script runs; its numbers mean nothing")
    parser.add_argument("--passages", type=int, help="number of ~200-token passages (default 32 quick / 256)")
    parser.add_argument("--queries", type=int, help="number of short queries (default 200 quick / 1000)")
    parser.add_argument("--bf16-passages", type=int,
                        help="passages for the bf16 case (default: all of them on CPUs with native bf16, else 4 "
                             "quick / 32: bf16 is slow without it, so it is timed on the first passages only)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 case")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS,
                        help="alternating rounds, ours then the reference (at least %(default)s)")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/encode_speed[_quick].json)")
    args = parser.parse_args(argv)
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}: medians and spreads need several alternating rounds")
    n_passages = args.passages or (2 if args.smoke else 32 if args.quick else 256)
    n_queries = args.queries or (4 if args.smoke else 200 if args.quick else 1000)
    from indexer.llm2vec.hardware import cpu_has_native_bf16

    n_bf16 = args.bf16_passages or (1 if args.smoke else n_passages if cpu_has_native_bf16() else 4 if args.quick else 32)
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1):
        print(f"WARNING: load average {load_before[0]:.1f} > {os.cpu_count()} cores: other processes share the CPU; "
              f"alternating rounds expose both sides to it, but {THREADS}-thread timings stay noisy")
    flags = cpu_flags()
    peak = matmul_peak(torch.float32)
    peak_bf16 = matmul_peak(torch.bfloat16, n=256, seconds=2.0)
    peak_int8 = int8_matmul_peak()
    print(f"CPU flags: {' '.join(flags) or 'unknown'}; matmul peak at {THREADS} threads: fp32 {peak:.1f} GFLOP/s, "
          f"bf16 {peak_bf16:.1f} GFLOP/s, int8 (ONNX Runtime) {peak_int8:.1f} GFLOP/s")

    # the base weights on both sides (the reference gets the same directory): the rows must agree
    model_dir = resolve_model(MODEL).location
    ours = LLM2VecEncoder.from_pretrained(MODEL, pooling="mean", dtype="float32", device="cpu")
    fast = None if args.no_bf16 else LLM2VecEncoder.from_pretrained(MODEL, pooling="mean", dtype="bfloat16",
                                                                     device="cpu")
    int8 = LLM2VecEncoder.from_pretrained(MODEL, pooling="mean", precision="int8")
    tokenizer = ours.tokenizer
    non_embedding = sum(p.numel() for n, p in ours.model.named_parameters() if "embed_tokens" not in n)
    flop_per_token = 2.0 * non_embedding
    passages = select_by_tokens(load_texts(args.data / "corpus.jsonl", title=True), tokenizer, 170, 230, n_passages)
    queries = select_by_tokens(load_texts(args.data / "queries.jsonl"), tokenizer, 5, 20, n_queries)
    inputs = {"passages": passages, "queries": queries}
    tokens = {name: sum(len(item.input_ids) for item in ours.tokenize(texts)) for name, texts in inputs.items()}
    tokens["passages_bf16"] = sum(len(item.input_ids) for item in ours.tokenize(passages[:n_bf16]))
    print(f"{len(passages)} passages ({tokens['passages']} tokens), {len(queries)} queries ({tokens['queries']} tokens), "
          f"{args.pairs} alternating rounds")

    seconds: dict[str, list[float]] = {key: [] for key in ("ours_passages_fp32", "ours_queries_fp32",
                                                           "ours_passages_bf16", "ours_queries_bf16", "ours_passages_int8",
                                                           "ours_queries_int8", "reference_passages_fp32",
                                                           "reference_queries_fp32")}
    rows: dict[str, np.ndarray] = {}
    load_averages, reference_load_s = [], []
    for encoder in (e for e in (ours, fast, int8) if e is not None):  # warm-up, untimed (the reference warms up on 4 texts per process too)
        encoder.encode(passages[:4], batch_size=BATCH_SIZE)
    with tempfile.TemporaryDirectory(prefix="l2v-speed-") as tmp:
        ref_dir = prepare_model_dir(model_dir, Path(tmp) / "ref-smollm2")
        runs = []
        for name, texts in inputs.items():
            write_inputs(Path(tmp) / f"{name}.jsonl", [(None, t) for t in texts])
            runs.append({"inputs": str(Path(tmp) / f"{name}.jsonl"), "batch_size": BATCH_SIZE, "warmup": 4,
                         "repeats": 1, "output": str(Path(tmp) / f"{name}.npy")})
        for round_number in range(1, args.pairs + 1):
            load_averages.append(round(os.getloadavg()[0], 2))
            for name, texts in inputs.items():  # A: ours
                elapsed, rows[f"ours_{name}_fp32"] = time_ours(ours, texts)
                seconds[f"ours_{name}_fp32"].append(elapsed)
            for name, texts in inputs.items():
                elapsed, rows[f"ours_{name}_int8"] = time_ours(int8, texts)
                seconds[f"ours_{name}_int8"].append(elapsed)
            if not args.no_bf16:
                elapsed, rows["ours_passages_bf16"] = time_ours(fast, passages[:n_bf16])
                seconds["ours_passages_bf16"].append(elapsed)
                if n_bf16 == len(passages):  # native bf16: the queries too
                    elapsed, rows["ours_queries_bf16"] = time_ours(fast, queries)
                    seconds["ours_queries_bf16"].append(elapsed)
            report = run_reference({"threads": THREADS, "jobs": [{  # B: the reference
                "model": str(ref_dir), "bidirectional": True, "pooling_mode": "mean", "max_length": 512,
                "doc_max_length": 400, "runs": runs}]})
            reference_load_s.append(report["jobs"][0]["load_s"])
            for run, name in zip(report["jobs"][0]["runs"], inputs):
                seconds[f"reference_{name}_fp32"].append(run["seconds"][0])
                rows[f"reference_{name}_fp32"] = np.load(Path(tmp) / f"{name}.npy")
            print(f"round {round_number}: " + ", ".join(f"{key} {values[-1]:.2f}s" for key, values in seconds.items()
                                                         if values))

    cases = {}
    for case, (name, ours_key, n, tok, own_peak) in {
        "passages_fp32": ("passages", "ours_passages_fp32", len(passages), tokens["passages"], peak),
        "queries_fp32": ("queries", "ours_queries_fp32", len(queries), tokens["queries"], peak),
        "passages_bf16": ("passages", "ours_passages_bf16", n_bf16, tokens["passages_bf16"], peak_bf16),
        "queries_bf16": ("queries", "ours_queries_bf16", len(queries), tokens["queries"], peak_bf16),
        "passages_int8": ("passages", "ours_passages_int8", len(passages), tokens["passages"], peak_int8),
        "queries_int8": ("queries", "ours_queries_int8", len(queries), tokens["queries"], peak_int8),
    }.items():
        if not seconds[ours_key]:
            continue
        ref_key = f"reference_{name}_fp32"
        ours_rates = rates(n, tok, statistics.median(seconds[ours_key]), flop_per_token, own_peak, peak)
        ref_rates = rates(len(inputs[name]), tokens[name], statistics.median(seconds[ref_key]), flop_per_token, peak,
                          peak)
        # rate ratios per round (the bf16 case times only the first passages of the same set)
        round_ratios = [(tok / a) / (tokens[name] / b) for a, b in zip(seconds[ours_key], seconds[ref_key])]
        cases[case] = {
            "n": n, "tokens": tok, "batch_size": BATCH_SIZE, "ours": ours_rates, "reference_fp32": ref_rates,
            "seconds": {"ours": spread(seconds[ours_key]), "reference_fp32": spread(seconds[ref_key])},
            "speedup": round(ours_rates["tokens_per_s"] / ref_rates["tokens_per_s"], 3),
            "speedup_per_round": spread(round_ratios),
            "target": TARGETS[case],
            "min_cosine_to_reference": round(float(row_cosines(rows[ours_key], rows[ref_key][:n]).min()), 6),
        }
        cases[case]["meets_target"] = cases[case]["speedup"] >= TARGETS[case]
    for case in ("passages_bf16", "queries_bf16"):
        if case in cases:
            bf16_rows = rows[f"ours_{case}"]
            bf16_cos = row_cosines(bf16_rows, rows[f"ours_{case.removesuffix('_bf16')}_fp32"][:len(bf16_rows)])
            cases[case]["min_cosine_to_ours_fp32"] = round(float(bf16_cos.min()), 6)
            cases[case]["cosine_ok"] = bool(bf16_cos.min() >= BF16_MIN_COSINE)
    for name in inputs:
        int8_cos = row_cosines(rows[f"ours_{name}_int8"], rows[f"ours_{name}_fp32"])
        cases[f"{name}_int8"]["min_cosine_to_ours_fp32"] = round(float(int8_cos.min()), 6)
        cases[f"{name}_int8"]["cosine_ok"] = bool(int8_cos.min() >= INT8_MIN_COSINE)

    print(f"\nmedians of {args.pairs} alternating rounds; CPU flags: {' '.join(flags) or 'unknown'}")
    print("| case | side | passages/s | tokens/s | GFLOP/s | % peak (own precision) | time spread | "
          "speedup (per-round range; target) | min cos |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, c in cases.items():
        for side in ("ours", "reference_fp32"):
            r, t = c[side], c["seconds"][side]
            extra = (f"{c['speedup']:.2f}x ({c['speedup_per_round']['min']:.2f}-{c['speedup_per_round']['max']:.2f}; "
                     f"{c['target']}x) {'OK' if c['meets_target'] else 'MISSED'}" if side == "ours" else "")
            cos = c.get("min_cosine_to_ours_fp32", c["min_cosine_to_reference"]) if side == "ours" else ""
            print(f"| {case} | {side} | {r['passages_per_s']} | {r['tokens_per_s']} | {r['gflops']} | "
                  f"{r['pct_of_peak']} | ±{100 * t['relative_spread'] / 2:.0f} % | {extra} | {cos} |")

    output = args.output or (SMOKE / "encode_speed.json" if args.smoke else
                             RESULTS / f"encode_speed{'_quick' if args.quick else ''}.json")
    written = write_result("encode_speed", {
        # the standard machine header (load average at the end), plus what this benchmark measured of the CPU
        "machine": {**machine_info(), "cpu_flags": flags, "fp32_matmul_peak_gflops": round(peak, 1),
                    "bf16_matmul_peak_gflops": round(peak_bf16, 1), "int8_matmul_peak_gflops": round(peak_int8, 1),
                    "load_average_before": list(load_before),
                    "load_average_per_round": load_averages,
                    "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]},
        "model": {"name": MODEL, "non_embedding_params": non_embedding, "pooling": "mean",
                  "bidirectional": True, "max_length": 512, "doc_max_length": 400},
        "quick": args.quick, "smoke": args.smoke, "pairs": args.pairs, "order": "A B per round: ours, then reference",
        "reference_load_s": round(statistics.median(reference_load_s), 2), "cases": cases,
    }, output)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
