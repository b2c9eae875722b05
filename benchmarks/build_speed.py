"""`l2v index build` throughput against the bare `encode` of the same chunks, in the same run.

    .venv/bin/python benchmarks/build_speed.py --data ../shared/data/scifact             # 128 docs, 3 pairs
    .venv/bin/python benchmarks/build_speed.py --data ../shared/data/scifact --quick     # 48 docs
    .venv/bin/python benchmarks/build_speed.py --docs 512 --pairs 5

A (the product): `l2v index build` in a fresh process on the first `--docs` documents of the
corpus (written out as a BEIR `corpus.jsonl`), into a new index each round: parsing, chunking,
encoding, the SQLite and FAISS commits, the keyword table; the query runtime is cached by the
untimed warm-up round, as on any machine after its first build. B (what a script would do):
a fresh process that loads the same encoder and calls `encode` once on the chunks the first
build stored (same texts, same instruction, same batch size, normalised), and nothing else.
Both are timed from spawn to exit, so both pay their start-up; B also reports its load and its
encode-only time. They alternate, A B A B, over `--pairs` rounds (at least 3); the figures are
medians with their spread and the per-round ratios. Target: build docs/s >= 0.9x bare encode's.
Results: benchmarks/results/build_speed[-quick].json, with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA, cpu_flags, machine_info, read_jsonl, spread, write_result  # noqa: E402

MIN_PAIRS = 3
TARGET = 0.9
L2V = str(Path(sys.executable).with_name("l2v"))
BARE = """
import json, sys, time
start = time.perf_counter()
from indexer.llm2vec import LLM2VecEncoder
job = json.load(open(sys.argv[1]))
encoder = LLM2VecEncoder.from_pretrained(job["model"])
loaded = time.perf_counter()
vectors = encoder.encode(job["texts"], instruction=job["instruction"], batch_size=job["batch_size"], normalize=True,
                         show_progress_bar=False)
print(json.dumps({"load_s": loaded - start, "encode_s": time.perf_counter() - loaded, "rows": len(vectors)}))
"""


def run(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one process and its stdout (a failure stops the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return elapsed, done.stdout


def stored_chunks(index_dir: Path) -> list[str]:
    """The chunk texts a build stored, in commit order."""
    with closing(sqlite3.connect(f"{(index_dir / 'meta.sqlite').resolve().as_uri()}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute("SELECT text FROM chunks ORDER BY id")]


def code_under_test() -> dict[str, str]:
    """Which `indexer` the timed processes import (PYTHONPATH may point at another checkout) and its commit."""
    found = subprocess.run([sys.executable, "-c", "import indexer; print(indexer.__file__)"], capture_output=True,
                           text=True, check=True).stdout.strip()
    root = Path(found).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"path": str(root), "commit": commit.stdout.strip() or "unknown"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "scifact", help="BEIR dataset directory")
    parser.add_argument("--docs", type=int, default=128, help="documents per build [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="48 documents")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help="alternating rounds (at least %(default)s)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=32, help="as `l2v index build --batch-size`")
    parser.add_argument("--output", type=Path, help="results JSON [default: benchmarks/results/build_speed[-quick].json]")
    args = parser.parse_args(argv)
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}")
    n_docs = 48 if args.quick else args.docs
    with tempfile.TemporaryDirectory(prefix="l2v-build-speed-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for row in read_jsonl(args.data / "corpus.jsonl", n_docs):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")

        def build(name: str) -> float:
            return run([L2V, "index", "build", str(work / name), str(corpus), "--model", args.model,
                        "--batch-size", str(args.batch_size)])[0]

        build("warm-up")  # the query runtime's one-time export and the page cache: not timed
        manifest = json.loads((work / "warm-up" / "manifest.json").read_text(encoding="utf-8"))
        texts = stored_chunks(work / "warm-up")
        job = work / "job.json"
        job.write_text(json.dumps({"model": args.model, "texts": texts, "batch_size": args.batch_size,
                                   "instruction": manifest.get("document_instruction")}), encoding="utf-8")
        bare_cmd = [sys.executable, "-c", BARE, str(job)]
        run(bare_cmd)
        build_s, bare_s, load_s, encode_s = [], [], [], []
        for round_number in range(1, args.pairs + 1):
            build_s.append(build(f"round-{round_number}"))
            elapsed, stdout = run(bare_cmd)
            bare_s.append(elapsed)
            timing = json.loads(stdout.splitlines()[-1])
            load_s.append(timing["load_s"])
            encode_s.append(timing["encode_s"])
            print(f"round {round_number}: build {build_s[-1]:.1f} s, bare encode {bare_s[-1]:.1f} s "
                  f"(load {load_s[-1]:.1f} s) -> {bare_s[-1] / build_s[-1]:.3f}x", flush=True)
    ratios = [b / a for a, b in zip(build_s, bare_s)]
    ratio = statistics.median(ratios)
    flags = cpu_flags()
    print(f"\n{n_docs} docs, {len(texts)} chunks; medians of {args.pairs} rounds; CPU flags: {' '.join(flags) or 'unknown'}")
    print(f"l2v index build {n_docs / statistics.median(build_s):.3f} docs/s, bare encode "
          f"{n_docs / statistics.median(bare_s):.3f} docs/s (encode only {n_docs / statistics.median(encode_s):.3f}); "
          f"build / bare = {ratio:.3f}x (target >= {TARGET}x)")
    written = write_result(f"build_speed{'-quick' if args.quick else ''}", {
        "machine": {**machine_info(), "cpu_flags": flags}, "code": code_under_test(), "data": str(args.data),
        "model": args.model,
        "docs": n_docs, "chunks": len(texts), "batch_size": args.batch_size, "pairs": args.pairs,
        "seconds": {"build": spread(build_s), "bare": spread(bare_s), "bare_load": spread(load_s),
                    "bare_encode_only": spread(encode_s)},
        "docs_per_s": {"build": round(n_docs / statistics.median(build_s), 3),
                       "bare": round(n_docs / statistics.median(bare_s), 3),
                       "bare_encode_only": round(n_docs / statistics.median(encode_s), 3)},
        "ratio_per_round": [round(r, 3) for r in ratios], "ratio": round(ratio, 3), "target": TARGET,
    }, args.output)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
