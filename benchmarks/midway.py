"""A long training run measured midway: its newest checkpoint against the recipe it would replace.

    python benchmarks/midway.py [--run indexer/llm2vec/training/runs/gemma3-270m/distill-epoch]
                                [--data ../shared/data] [--precision fp32]

A run that outlasts sessions (`make train-gemma3-epoch`) keeps one checkpoint. This exports it (as
`l2v train export --checkpoint` does), stacks it on the adapters the run trains on, and scores it on
the sets a recipe may be chosen on, never a reported test: dense NDCG@10 on `beir.py --quick`'s
reduced corpora of SciFact, CACM and NPL, and Spearman on STS-B dev. The model's shipped default
recipe is scored the same way, at the same chunk length (the one its indexes get), as the reference.

With `--cooldown N` it also measures what the run would give if it ended there: a branch of the
checkpoint whose learning rate decays to zero over N more steps (`l2v train branch`, trained in
`.cache/branches/`, resumable), the run itself left as it is.

Each measured (step, cool-down) is a row of `results/midway-<model>-<run>.json`; one already there is
not measured again, so run it once a session, after stopping the run (they would share the cores).
`report.py` plots the rows against the run's loss.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, ROOT, files_sha256, result_path, run_header, write_result  # noqa: E402
from ablation import RETRIEVAL, sts_spearman  # noqa: E402
from beir import CACHE_ROOT, DEFAULT_TASKS, QUICK, evaluate, load_dataset, run_llm2vec  # noqa: E402

DEFAULT_RUN = ROOT / "indexer" / "llm2vec" / "training" / "runs" / "gemma3-270m" / "distill-epoch"
BRANCHES = ROOT / ".cache" / "branches"


def run_identity(run: Path) -> tuple[dict[str, Any], int, float | None]:
    """The run's training config, the step of its newest checkpoint and the learning rate it logged there."""
    from indexer.llm2vec.training.checkpoint import newest_checkpoint

    newest = newest_checkpoint(run)
    if newest is None:
        raise SystemExit(f"{run} holds no checkpoint yet: let the run reach its first save_steps")
    step = int(newest[1]["step"])
    log = run / "train_log.jsonl"
    rates = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.is_file() else []
    lr = next((r["lr"] for r in rates if r.get("step") == step), None)
    return json.loads((run / "train_config.json").read_text(encoding="utf-8")), step, lr


def score(encoder: Any, datasets: dict[str, Any], sts: Path, chunk_tokens: int) -> dict[str, Any]:
    """Dense NDCG@10 per quick set (through our indexer and retriever), their mean, STS-B dev Spearman."""
    row: dict[str, Any] = {"fingerprint": encoder.fingerprint()}
    for name, dataset in datasets.items():
        run = run_llm2vec(dataset, encoder, DEFAULT_TASKS.get(name, "generic"), cache_root=CACHE_ROOT,
                          chunk_tokens=chunk_tokens)
        row[name] = round(evaluate(dataset, run)["ndcg@10"], 4)
    row["mean"] = round(sum(row[name] for name in datasets) / len(datasets), 4)
    row["stsb_dev"] = sts_spearman(encoder, sts, None)
    print(f"  {json.dumps(row)}")
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(DEFAULT_RUN), help="training run folder [default: %(default)s]")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="directory holding scifact/, cacm/, npl/, stsb/")
    parser.add_argument("--reference", default=None,
                        help="encoder to compare with [default: the run's model with its shipped default recipe]")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--cooldown", type=int, default=0,
                        help="also measure the checkpoint cooled down over this many more steps [default: 0, not]")
    parser.add_argument("--output", default=None, help="result JSON [default: results/midway-<model>-<run>.json]")
    args = parser.parse_args(argv)

    from indexer import LLM2VecEncoder
    from indexer.chunking import default_chunk_tokens
    from indexer.llm2vec.training import branch_run, export_adapter, train

    run = Path(args.run)
    config, step, lr = run_identity(run)
    model = str(config["model"])
    data = Path(args.data)
    datasets = {name: load_dataset(data / name, **QUICK) for name in RETRIEVAL}
    sts = data / "stsb" / "dev.jsonl"
    reference = LLM2VecEncoder.from_pretrained(args.reference or model.split(":")[0], precision=args.precision)
    chunk_tokens = default_chunk_tokens(reference)
    protocol = {"sets": {name: ds.protocol for name, ds in datasets.items()}, "stsb": "dev, all pairs",
                "metric": "dense NDCG@10 per set, Spearman on STS-B dev", "chunk_tokens": chunk_tokens,
                "precision": args.precision}
    hashes = {**{name: ds.sha256 for name, ds in datasets.items()}, "stsb_dev": files_sha256(sts)}
    path = result_path(f"midway-{Path(model.split(':')[0]).name}-{run.name}", args.output)
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    same = earlier.get("protocol") == protocol and earlier.get("data_sha256") == hashes
    rows = {(row["step"], row.get("cooldown_steps", 0)): row for row in earlier.get("rows", [])} if same else {}
    header = run_header()

    kept = earlier.get("reference") if same else None
    if kept is None or kept.get("fingerprint") != reference.fingerprint():
        print(f"reference {reference.spec().get('model')}:")
        kept = {"model": reference.spec().get("model"), "date": header["date"],
                **score(reference, datasets, sts, chunk_tokens)}
    for cooldown in sorted({0, args.cooldown}):
        if (step, cooldown) in rows:
            print(f"step {step}, cool-down {cooldown}: measured already ({rows[step, cooldown]['date']})")
            continue
        trained = run
        if cooldown:
            trained = train(branch_run(run, BRANCHES / f"{run.name}-step{step}-cool{cooldown}", cooldown))
        with tempfile.TemporaryDirectory() as folder:
            adapter = export_adapter(trained, Path(folder) / "midway", checkpoint=True)
            encoder = LLM2VecEncoder.from_pretrained(model, [*config["adapters"], adapter], precision=args.precision)
            print(f"step {step}, cool-down {cooldown}:")
            rows[step, cooldown] = {"step": step, "cooldown_steps": cooldown, "lr": lr, "date": header["date"],
                                    "machine": header["machine"], **score(encoder, datasets, sts, chunk_tokens)}
    payload = {"run": str(run.resolve().relative_to(ROOT)) if run.resolve().is_relative_to(ROOT) else str(run),
               "max_steps": config["max_steps"], "protocol": protocol, "data_sha256": hashes, "reference": kept,
               "rows": [rows[key] for key in sorted(rows)]}
    print(f"wrote {write_result(path.stem, payload, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
