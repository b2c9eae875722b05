"""The LLM2Vec ablation at the embedded model's scale: what each step of the recipe buys.

    python benchmarks/ablation.py [--data ../shared/data] [--configs causal,bidirectional,...] [--full]

Rows: the untrained model with causal attention, with bidirectional attention, then the shipped
adapters (bidirectional + MNTP, + MNTP + SimCSE, + MNTP + supervised, + distillation on top), the
second base model (Gemma 3 270M) through the same recipes, with BM25 for orientation.
Columns: NDCG@10 and Recall@100 on the BEIR sets (through our indexer and retriever, as
`beir.py` runs them) and Spearman correlation of cosine similarity on STS-B test and SICK-R test.
None of these test sets is used for training (MNTP/SimCSE: wiki_text; supervised: qa_pairs).

By default the retrieval sets use `beir.py --quick`'s reduced corpora and SICK-R a seeded sample
of 500 test pairs, so the table fits in about an hour of 2 CPU cores; `--full` uses everything.
Finished configurations are cached in `benchmarks/.work/ablation/`, so an interrupted run resumes, and
the result keeps the rows of configurations not named in `--configs` (so one new row needs one run).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, ROOT, files_sha256, result_path, write_result  # noqa: E402
from beir import DEFAULT_TASKS, QUICK, evaluate, kept_rows, load_dataset, run_bm25, run_llm2vec  # noqa: E402

RETRIEVAL = ("scifact", "cacm", "npl")
STS_INSTRUCTION = "Retrieve semantically similar text"
SICK_SAMPLE = 500
WORK = ROOT / "benchmarks" / ".work" / "ablation"

# name -> (model name with recipe, bidirectional, description)
CONFIGS: dict[str, tuple[str, bool, str]] = {
    "causal": ("smollm2-135m:base", False, "untrained, causal attention, mean pooling"),
    "bidirectional": ("smollm2-135m:base", True, "untrained, bidirectional attention"),
    "bi+mntp": ("smollm2-135m:mntp", True, "bidirectional + MNTP adapter"),
    "bi+mntp+simcse": ("smollm2-135m:mntp+simcse", True, "bidirectional + MNTP + unsupervised SimCSE"),
    "bi+mntp+supervised": ("smollm2-135m:mntp+supervised", True,
                           "bidirectional + MNTP + supervised contrastive (the default before 2026-12-02)"),
    "bi+mntp+supervised+distill": ("smollm2-135m:mntp+supervised+distill", True,
                                   "+ distilled from all-MiniLM-L6-v2 (mined negatives + soft targets, distill.yaml)"),
    "bi+mntp+supervised+distill2": ("smollm2-135m:mntp+supervised+distill2", True,
                                    "+ the longer distillation (distill2.yaml: 120 steps, teacher at 80 tokens; "
                                    "SmolLM2's default recipe)"),
    "gemma3:bi+mntp+supervised": ("gemma3-270m:mntp+supervised", True,
                                  "Gemma 3 270M base through SmolLM2's MNTP and supervised recipes"),
    "gemma3:bi+mntp+supervised+distill2": ("gemma3-270m:mntp+supervised+distill2", True,
                                           "Gemma 3 270M base, + SmolLM2's distill2 recipe (the default 2026-12-03 to 07)"),
    "gemma3:bi+mntp+supervised+distill3": ("gemma3-270m:mntp+supervised+distill3", True,
                                           "Gemma 3 270M base, + the epoch recipe's first 530 steps and an 80-step "
                                           "cool-down (distill3.yaml; the default since 2026-12-07)"),
}


def read_sts(path: Path, sample: int | None = None, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if sample is not None and len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    return [r["s1"] for r in rows], [r["s2"] for r in rows], np.array([float(r["score"]) for r in rows])


def sts_spearman(encoder: Any, path: Path, sample: int | None) -> float:
    """Spearman correlation between gold scores and the cosine of the two sentences' embeddings."""
    from scipy.stats import spearmanr

    first, second, gold = read_sts(path, sample)
    unique = sorted(set(first) | set(second))
    vectors = encoder.encode(unique, instruction=STS_INSTRUCTION, batch_size=32, normalize=True,
                             show_progress_bar=True)
    row = {text: i for i, text in enumerate(unique)}
    cosine = np.einsum("ij,ij->i", vectors[[row[t] for t in first]], vectors[[row[t] for t in second]])
    return round(float(spearmanr(gold, cosine).statistic), 4)


def load_config(name: str) -> Any:
    from indexer import LLM2VecEncoder

    model, bidirectional, _ = CONFIGS[name]
    return LLM2VecEncoder.from_pretrained(model, bidirectional=bidirectional, pooling="mean")


def evaluate_config(name: str, encoder: Any, datasets: dict[str, Any], data: Path, full: bool) -> dict[str, Any]:
    model, bidirectional, description = CONFIGS[name]
    row: dict[str, Any] = {"name": name, "model": model, "bidirectional": bidirectional, "description": description,
                           "fingerprint": encoder.fingerprint()}
    for set_name, dataset in datasets.items():
        scores = evaluate(dataset, run_llm2vec(dataset, encoder, DEFAULT_TASKS.get(set_name, "generic")))
        row[set_name] = {k: scores[k] for k in ("ndcg@10", "recall@100")}
        print(f"  {name} {set_name}: {row[set_name]}")
    row["stsb"] = sts_spearman(encoder, data / "stsb" / "test.jsonl", None)
    row["sickr"] = sts_spearman(encoder, data / "sick" / "test.jsonl", None if full else SICK_SAMPLE)
    print(f"  {name} STS-B {row['stsb']}  SICK-R {row['sickr']}")
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="directory holding scifact/, cacm/, npl/, stsb/, sick/")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--full", action="store_true", help="full corpora and all SICK-R test pairs")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    data = Path(args.data)
    limits = {} if args.full else dict(QUICK)
    datasets = {name: load_dataset(data / name, **limits) for name in RETRIEVAL}
    protocol = {name: ds.protocol for name, ds in datasets.items()}
    protocol.update(sts={"stsb": "test, all pairs", "sickr": "test, all pairs" if args.full else
                         f"test, seeded sample of {SICK_SAMPLE} pairs", "instruction": STS_INSTRUCTION})
    hashes = {name: ds.sha256 for name, ds in datasets.items()}
    hashes.update(stsb=files_sha256(data / "stsb" / "test.jsonl"), sickr=files_sha256(data / "sick" / "test.jsonl"))
    key = files_sha256(*[data / n / "qrels" / "test.tsv" for n in RETRIEVAL])[:12] + ("-full" if args.full else "")
    rows = [{"name": "bm25", "model": "bm25s", "description": "lexical baseline (bm25s)", "stsb": None, "sickr": None,
             **{name: {k: v for k, v in evaluate(ds, run_bm25(ds)).items() if k != "mrr@10"}
                for name, ds in datasets.items()}}]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    result = "ablation" + ("" if args.full else "-quick")  # rows of configs not rerun stay, with their run's date
    rows += kept_rows(result_path(result, args.output), {"protocol": protocol, "data_sha256": hashes}, ["bm25", *configs])
    for name in configs:
        if name not in CONFIGS:
            raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        encoder = load_config(name)
        cache = WORK / key / f"{name}-{encoder.fingerprint()}.json"  # a retrained adapter is a new entry
        if cache.is_file():
            rows.append(json.loads(cache.read_text()))
            print(f"  {name}: cached in {cache}")
            continue
        row = evaluate_config(name, encoder, datasets, data, args.full)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(row, indent=2))
        rows.append(row)
    path = write_result(result, {"protocol": protocol, "data_sha256": hashes, "rows": rows}, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
