"""Start-up of the CLI, end to end: `l2v --help`, `l2v index stats`, and `l2v search` with the
query encoded by the cached ONNX Runtime export (`--runtime auto`, what `l2v search` does after
`l2v index build`) against the torch model (`--runtime torch`, what it did before).

    .venv/bin/python benchmarks/startup.py demo-index            # after `make demo`
    .venv/bin/python benchmarks/startup.py demo-index --pairs 5

Each command is a fresh process, timed from spawn to exit (wall clock). The two search runtimes
alternate, A B A B, over `--pairs` rounds (at least 3) and the figures are medians with their
spread; both must return the same hits (ids in order, scores within 1e-4). `--help` and `stats`
run once per round too. The CPU flags and load average go with the figures, in
benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_flags, machine_info, spread, write_result  # noqa: E402

MIN_PAIRS = 3
QUERY = "how do plants turn sunlight into energy?"
L2V = [str(Path(sys.executable).with_name("l2v"))]  # the console script next to this interpreter


def timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one `l2v` process and its stdout (a failure stops the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run(L2V + args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"l2v {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done.stdout


def hits(stdout: str) -> list[tuple[str, float]]:
    return [(row["chunk_id"] if "chunk_id" in row else row.get("id"), row["score"])
            for row in map(json.loads, stdout.splitlines())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path, help="an index built by `l2v index build` (e.g. demo-index)")
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help="alternating rounds (at least %(default)s)")
    parser.add_argument("--output", type=Path, help="results JSON [default: benchmarks/results/startup.json]")
    args = parser.parse_args(argv)
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}")
    search = ["search", str(args.index), QUERY, "--json", "-k", "5"]
    timed(search + ["--runtime", "onnx"])  # makes the export if `l2v index build` did not; warms the page cache
    timed(search + ["--runtime", "torch"])
    seconds: dict[str, list[float]] = {"help": [], "stats": [], "search_onnx": [], "search_torch": []}
    load = []
    for round_number in range(1, args.pairs + 1):
        load.append(round(os.getloadavg()[0], 2))
        seconds["help"].append(timed(["--help"])[0])
        seconds["stats"].append(timed(["index", "stats", str(args.index)])[0])
        onnx_s, onnx_out = timed(search + ["--runtime", "auto"])
        torch_s, torch_out = timed(search + ["--runtime", "torch"])
        seconds["search_onnx"].append(onnx_s)
        seconds["search_torch"].append(torch_s)
        a, b = hits(onnx_out), hits(torch_out)
        if [i for i, _ in a] != [i for i, _ in b] or max(abs(x - y) for (_, x), (_, y) in zip(a, b)) > 1e-4:
            raise SystemExit(f"the runtimes disagree:\n{a}\n{b}")
        print(f"round {round_number}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in seconds.items()), flush=True)
    summary = {name: spread(values) for name, values in seconds.items()}
    ratio = summary["search_torch"]["median"] / summary["search_onnx"]["median"]
    flags = cpu_flags()
    print(f"\nmedians of {args.pairs} rounds; CPU flags: {' '.join(flags) or 'unknown'}")
    print("| command | median s | min-max s |\n|---|---|---|")
    labels = {"help": "l2v --help", "stats": "l2v index stats", "search_onnx": "l2v search (ONNX query runtime)",
              "search_torch": "l2v search (torch, as before)"}
    for name, label in labels.items():
        s = summary[name]
        print(f"| {label} | {s['median']} | {s['min']}-{s['max']} |")
    print(f"search: torch / ONNX = {ratio:.2f}x")
    written = write_result("startup", {
        "machine": {**machine_info(), "cpu_flags": flags, "load_average_per_round": load},
        "index": str(args.index), "query": QUERY, "pairs": args.pairs, "seconds": summary,
        "search_speedup": round(ratio, 2), "targets": {"help": 1.0, "stats": 1.0, "search_onnx": 4.0},
    }, args.output)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
