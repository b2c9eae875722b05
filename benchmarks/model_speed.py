"""Encode throughput of two base models for the default, on the same texts, alternating, in one run.

    .venv/bin/python benchmarks/model_speed.py --data ../shared/data/scifact
    .venv/bin/python benchmarks/model_speed.py --models smollm2-135m,gemma3-270m:base --precision bf16 --pairs 5

Issue 15 lets a second base model become the default only if its encode throughput is at least
0.8x the current default's. This script loads each model as `LLM2VecEncoder` (bidirectional, mean
pooling, the precision asked) and times `encode` on the same texts: the first `--passages` SciFact
documents (title + text, as `beir.py` indexes them, batch 16) and the first `--queries` SciFact
claims with the SciFact instruction (batch 32). Texts, not tokens, are the unit: the models'
tokenizers cut the same text into different numbers of tokens (Gemma 3's 262k-token vocabulary
into fewer), and a user waits per document. The models alternate, A B A B, over `--pairs` rounds
(at least 3) after one untimed warm-up each; the figures are medians with their spread, and the
ratio is B's texts/s over A's (each model's token count of the texts, instruction left out, is
recorded beside it). LoRA adapters are merged into the weights at load, so a recipe's adapters do
not change its speed: `:base` times the architecture. Results:
benchmarks/results/model_speed.json, with the CPU flags. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, cpu_flags, read_jsonl, write_result  # noqa: E402

MIN_PAIRS = 3
PASSAGE_BATCH, QUERY_BATCH = 16, 32
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"
TARGET = 0.8


def load_cases(data: Path, passages: int, queries: int) -> dict[str, tuple[list[str], str | None, int]]:
    """case -> (texts, instruction, batch size)."""
    docs = read_jsonl(data / "corpus.jsonl", limit=passages)
    claims = read_jsonl(data / "queries.jsonl", limit=queries)
    return {"passages": ([f"{d.get('title', '')} {d['text']}".strip() for d in docs], None, PASSAGE_BATCH),
            "queries": ([q["text"] for q in claims], INSTRUCTION, QUERY_BATCH)}


def timed(encoder: Any, texts: list[str], instruction: str | None, batch_size: int) -> float:
    start = time.perf_counter()
    encoder.encode(texts, instruction, batch_size=batch_size, normalize=True)
    return time.perf_counter() - start


def summary(n: int, seconds: Sequence[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"seconds": [round(s, 3) for s in seconds], "median_s": round(median, 3),
            "texts_per_s": round(n / median, 2), "relative_spread": round((max(seconds) - min(seconds)) / median, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact",
                        help="BEIR-layout SciFact directory [default: %(default)s]")
    parser.add_argument("--models", default="smollm2-135m:base,gemma3-270m:base",
                        help="A,B: the current default's base model first [default: %(default)s]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--passages", type=int, default=64, help="documents to encode [default: %(default)s]")
    parser.add_argument("--queries", type=int, default=200, help="queries to encode [default: %(default)s]")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help="alternating rounds [default: %(default)s]")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    if len(models) != 2 or models[0] == models[1]:
        parser.error(f"--models takes two different names, A,B; got {args.models!r}")
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}: medians and spreads need several alternating rounds")
    from indexer import LLM2VecEncoder

    cases = load_cases(args.data, args.passages, args.queries)
    encoders = {m: LLM2VecEncoder.from_pretrained(m, bidirectional=True, pooling="mean", precision=args.precision)
                for m in models}
    tokens = {m: {case: sum(len(ids) for ids in enc.tokenizer(texts)["input_ids"])
                  for case, (texts, _, _) in cases.items()} for m, enc in encoders.items()}
    for model, encoder in encoders.items():  # warm-up: first-call allocations and kernel choices
        for texts, instruction, batch in cases.values():
            timed(encoder, texts[:batch], instruction, batch)
    times: dict[str, dict[str, list[float]]] = {m: {case: [] for case in cases} for m in models}
    flags = cpu_flags()
    print(f"{' vs '.join(models)}, {args.precision}, {args.pairs} alternating rounds; CPU flags: {' '.join(flags)}")
    for round_ in range(1, args.pairs + 1):
        for model in models:
            for case, (texts, instruction, batch) in cases.items():
                times[model][case].append(timed(encoders[model], texts, instruction, batch))
        print(f"  round {round_}: " + "  ".join(f"{m} {c} {times[m][c][-1]:.1f} s" for m in models for c in cases))
    rows = {m: {case: {**summary(len(cases[case][0]), times[m][case]), "tokens": tokens[m][case]} for case in cases}
            for m in models}
    a, b = models
    ratios = {case: round(rows[b][case]["texts_per_s"] / rows[a][case]["texts_per_s"], 3) for case in cases}
    for case, ratio in ratios.items():
        print(f"{case}: {a} {rows[a][case]['texts_per_s']} texts/s ({tokens[a][case]} tokens), "
              f"{b} {rows[b][case]['texts_per_s']} texts/s ({tokens[b][case]} tokens): {b} / {a} = {ratio:.2f}x "
              f"(target >= {TARGET}x: {'met' if ratio >= TARGET else 'missed'})")
    path = write_result("model_speed", {"models": models, "precision": args.precision, "pairs": args.pairs,
                                        "cases": {c: {"texts": len(t), "batch_size": bs, "instruction": i}
                                                  for c, (t, i, bs) in cases.items()},
                                        "rows": rows, "ratio_b_over_a": ratios, "target": TARGET}, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
