"""Encode inputs with the reference `llm2vec` library; run by the REFERENCE venv's python.

    .venv-ref/bin/python benchmarks/reference_encode.py SPEC.json

SPEC.json: {"threads": 2, "report": "report.json", "jobs": [{"model": DIR, "adapter": DIR|null,
"bidirectional": true, "pooling_mode": "mean", "max_length": 512, "doc_max_length": 400,
"runs": [{"inputs": "in.jsonl", "batch_size": 32, "output": "out.npy", "repeats": 1,
"warmup": 0}]}]}. Inputs are JSONL lines {"instruction": str|null, "text": str}, encoded as
the reference's `[instruction, text]` pairs with `skip_instruction=True`. Each run writes float32
rows in input order to `output`; the report lists the load and encode seconds of every run.
This script imports only the reference library (never our package): it is the ground truth.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from llm2vec import LLM2Vec


def read_pairs(path: str) -> list[list[str]]:
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                pairs.append([row.get("instruction") or "", row["text"]])
    return pairs


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    model = LLM2Vec.from_pretrained(
        job["model"],
        peft_model_name_or_path=job.get("adapter"),
        enable_bidirectional=job.get("bidirectional", True),
        pooling_mode=job.get("pooling_mode", "mean"),
        max_length=job.get("max_length", 512),
        doc_max_length=job.get("doc_max_length", 400),
        skip_instruction=True,
        torch_dtype=torch.float32,
    )
    load_s = time.perf_counter() - start
    runs = []
    for run in job["runs"]:
        pairs = read_pairs(run["inputs"])
        batch_size = int(run.get("batch_size", 32))
        if run.get("warmup"):
            model.encode(pairs[: run["warmup"]], batch_size=batch_size, show_progress_bar=False)
        seconds = []
        rows = None
        for _ in range(int(run.get("repeats", 1))):
            start = time.perf_counter()
            rows = model.encode(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
            seconds.append(time.perf_counter() - start)
        np.save(run["output"], np.asarray(rows, dtype=np.float32))
        runs.append({"inputs": run["inputs"], "n": len(pairs), "batch_size": batch_size, "seconds": seconds})
    return {"model": job["model"], "adapter": job.get("adapter"), "load_s": load_s, "runs": runs}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec.get("threads", 2)))
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "jobs": [run_job(job) for job in spec["jobs"]],
    }
    Path(spec["report"]).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
