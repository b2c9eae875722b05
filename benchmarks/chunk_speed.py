"""`l2v index build` throughput at two chunk lengths, alternated in the same run.

    .venv/bin/python benchmarks/chunk_speed.py --data ../shared/data/scifact     # 96 docs, 400 vs 128, 3 pairs

Since 2026-12-07 the default model's indexes chunk at 128 tokens (`recipes.INDEX_CHUNK_TOKENS`)
where they chunked at its doc_max_length, 400, before: more and shorter windows, each sharing 32
tokens with the next, so more tokens to encode but less attention per token. Each round builds the
first `--docs` documents of the corpus into a fresh index at each length, each build in a fresh
process (`l2v index build --chunk-tokens N`, spawn to exit), alternating A B A B after an untimed
warm-up build of each. Reported: median docs/s of each length with their spread, and the ratio of
the second length's docs/s to the first's, per round and its median.
Results: benchmarks/results/chunk_speed.json, with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, cpu_flags, machine_info, read_jsonl, spread, write_result  # noqa: E402
from build_speed import L2V, MIN_PAIRS, code_under_test, run, stored_chunks  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact", help="BEIR dataset directory")
    parser.add_argument("--docs", type=int, default=96, help="documents per build [default: %(default)s]")
    parser.add_argument("--chunks", default="400,128", help="the two chunk lengths, old,new [default: %(default)s]")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help="alternating rounds (at least %(default)s)")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--precision", default="fp32", help="as `l2v index build --precision` [default: fp32]")
    parser.add_argument("--output", type=Path, help="results JSON [default: benchmarks/results/chunk_speed.json]")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.chunks.split(",")]
    if len(lengths) != 2:
        parser.error("--chunks takes two lengths, old,new")
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}")
    seconds: dict[int, list[float]] = {n: [] for n in lengths}
    chunks: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="l2v-chunk-speed-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for row in read_jsonl(args.data / "corpus.jsonl", args.docs):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")

        def build(name: str, length: int) -> float:
            return run([L2V, "index", "build", str(work / name), str(corpus), "--model", args.model,
                        "--chunk-tokens", str(length), "--precision", args.precision])[0]

        for length in lengths:  # the query runtime's one-time export and the page cache: not timed
            build(f"warm-up-{length}", length)
            chunks[length] = len(stored_chunks(work / f"warm-up-{length}"))
        for round_number in range(1, args.pairs + 1):
            for length in lengths:
                seconds[length].append(build(f"round-{round_number}-{length}", length))
            print(f"round {round_number}: " + ", ".join(f"{n} tokens {seconds[n][-1]:.1f} s" for n in lengths),
                  flush=True)
    old, new = lengths
    ratios = [a / b for a, b in zip(seconds[old], seconds[new])]  # docs/s new over old
    flags = cpu_flags()
    docs_per_s = {str(n): round(args.docs / statistics.median(seconds[n]), 3) for n in lengths}
    print(f"\n{args.docs} docs ({', '.join(f'{chunks[n]} chunks at {n}' for n in lengths)}); medians of "
          f"{args.pairs} rounds; CPU flags: {' '.join(flags) or 'unknown'}")
    print(", ".join(f"{n} tokens: {docs_per_s[str(n)]} docs/s" for n in lengths)
          + f"; {new} / {old} = {statistics.median(ratios):.3f}x")
    written = write_result("chunk_speed", {
        "machine": {**machine_info(), "cpu_flags": flags}, "code": code_under_test(), "data": str(args.data),
        "model": args.model, "precision": args.precision, "docs": args.docs, "pairs": args.pairs,
        "chunk_tokens": lengths, "chunks": {str(n): chunks[n] for n in lengths},
        "seconds": {str(n): spread(seconds[n]) for n in lengths}, "docs_per_s": docs_per_s,
        "ratio_per_round": [round(r, 3) for r in ratios], "ratio": round(statistics.median(ratios), 3),
    }, args.output)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
