"""benchmarks/midway.py: a stopped run's newest checkpoint scored once per step beside its reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
pytest.importorskip("ranx", reason="the benchmark harness needs the bench extra (pip install -e '.[bench]')")
pytest.importorskip("bm25s", reason="the benchmark harness needs the bench extra (pip install -e '.[bench]')")
import beir  # noqa: E402
import midway  # noqa: E402
import report  # noqa: E402

from indexer.llm2vec.training import TrainConfig, train  # noqa: E402

TOPICS = ["photosynthesis in plants", "volcanic eruptions", "jazz music history", "protein folding"]
PAIRS = [{"query": f"tell me about {t}", "positive": f"An article about {t}, in detail."} for t in TOPICS]
STS = [("A man is playing a guitar.", "A man plays the guitar.", 4.8), ("A cat sleeps.", "Stocks fell today.", 0.1),
       ("A woman slices onions.", "Someone is cutting an onion.", 4.0), ("Kids run outside.", "A child is running.", 3.1)]


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    for name in midway.RETRIEVAL:
        (root / name / "qrels").mkdir(parents=True)
        docs = [{"_id": f"d{i}", "title": t.title(), "text": f"An article about {t}."} for i, t in enumerate(TOPICS)]
        docs += [{"_id": f"x{i}", "title": "", "text": f"Filler text number {i}."} for i in range(6)]
        (root / name / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        queries = [{"_id": f"q{i}", "text": f"what about {t}"} for i, t in enumerate(TOPICS)]
        (root / name / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
        (root / name / "qrels" / "test.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    (root / "stsb").mkdir()
    (root / "stsb" / "dev.jsonl").write_text("\n".join(json.dumps({"s1": a, "s2": b, "score": s}) for a, b, s in STS))
    return root


@pytest.fixture
def stopped_run(tiny_llama, tmp_path, stop_training_at):
    """A supervised run stopped at step 3, its newest checkpoint at step 2."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    stop_training_at(3)
    run = tmp_path / "run"
    config = TrainConfig.build("supervised", model=str(tiny_llama), data=str(pairs), output_dir=str(run), max_steps=6,
                               batch_size=2, max_length=32, learning_rate=5e-3, save_steps=2, lora_r=4, lora_alpha=8,
                               gradient_checkpointing=False, bf16="false")
    with pytest.raises(KeyboardInterrupt):
        train(config, show_progress=False)
    return run


def test_a_step_is_scored_once_as_it_is_and_cooled_down(stopped_run, data_dir, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    monkeypatch.setattr(midway, "CACHE_ROOT", tmp_path / "vectors")
    monkeypatch.setattr(midway, "BRANCHES", tmp_path / "branches")
    output = tmp_path / "results" / "midway-tiny-run.json"
    argv = ["--run", str(stopped_run), "--data", str(data_dir), "--reference", str(tiny_llama), "--output", str(output),
            "--cooldown", "1"]
    assert midway.main(argv) == 0
    result = json.loads(output.read_text())
    row, cooled = result["rows"]
    assert (row["step"], row["cooldown_steps"], cooled["step"], cooled["cooldown_steps"]) == (2, 0, 2, 1)
    assert row["lr"] is not None and result["max_steps"] == 6
    assert (tmp_path / "branches" / "run-step2-cool1" / "train_provenance.json").is_file()  # trained to its end
    assert json.loads((stopped_run / "checkpoint" / "trainer_state.json").read_text())["step"] == 2  # run untouched
    fingerprints = {row["fingerprint"], cooled["fingerprint"], result["reference"]["fingerprint"]}
    assert len(fingerprints) == 3  # the checkpoint and its cool-down each changed the encoder
    for scored in (row, cooled, result["reference"]):
        assert all(0.0 <= scored[name] <= 1.0 for name in midway.RETRIEVAL) and -1.0 <= scored["stsb_dev"] <= 1.0
        assert scored["mean"] == pytest.approx(sum(scored[name] for name in midway.RETRIEVAL) / 3, abs=1e-4)

    def refuse(*args, **kwargs):
        raise AssertionError("a measured step must not be exported and scored again")

    monkeypatch.setattr(midway, "score", refuse)
    assert midway.main(argv) == 0
    assert json.loads(output.read_text())["rows"] == [row, cooled]

    context = report.Context(results=output.parent, output=tmp_path / "RESULTS.md", plots=tmp_path / "plots")
    markdown = "\n".join(report.long_runs(context))
    assert f"| step 2 | 0 | {row['lr']:.2e} | {row['scifact']:.3f} |" in markdown and "reference: " in markdown
    assert f"| step 2 | 1 | {row['lr']:.2e} | {cooled['scifact']:.3f} |" in markdown
    assert (tmp_path / "plots" / "midway-tiny-run.png").stat().st_size > 0  # the loss and the scores against step


def test_a_run_without_a_checkpoint_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match="no checkpoint yet"):
        midway.main(["--run", str(tmp_path / "run")])


def test_the_report_lists_checkpoints_run_on_full_collections_by_step_beside_the_default(tmp_path):
    def beir_result(stem, dense, hybrid):
        rows = [{"name": "llm2vec", "ndcg@10": dense}, {"name": "hybrid", "ndcg@10": hybrid}]
        payload = {"dataset": "cacm", "protocol": {"max_docs": None}, "rows": rows, "command": f"python beir.py {stem}"}
        (tmp_path / f"{stem}.json").write_text(json.dumps(payload))

    beir_result("beir-cacm-gemma3-epoch1025", 0.355, 0.542)
    beir_result("beir-cacm-gemma3-epoch530-cool80", 0.372, 0.540)
    beir_result("beir-cacm", 0.372, 0.540)
    context = report.Context(results=tmp_path, output=tmp_path / "RESULTS.md", plots=tmp_path / "plots")
    lines = report.checkpoints_on_full_collections(context, ["scifact", "cacm"])
    rows = [line for line in lines if line.startswith("| ") and "/" in line and "<set>" not in line]
    assert rows == ["| gemma3-epoch530-cool80 | – | 0.372 / 0.540 |", "| gemma3-epoch1025 | – | 0.355 / 0.542 |",
                    "| the shipped default | – | 0.372 / 0.540 |"]
    assert report.checkpoints_on_full_collections(context, ["scifact"]) == []  # no checkpoint ran on it


def test_a_run_whose_log_is_on_another_machine_keeps_its_committed_plot(tmp_path):
    # A run trained in an ignored .cache elsewhere: its log is not here, the plot drawn there is committed.
    row = {"step": 5, "cooldown_steps": 0, "lr": 1e-4, "date": "2026-12-07T00:00:00", "scifact": 0.5, "cacm": 0.4,
           "npl": 0.3, "mean": 0.4, "stsb_dev": 0.8}
    reference = {**row, "model": "tiny:ref"}
    result = {"run": ".cache/train/tiny/gone", "max_steps": 10, "reference": reference, "rows": [row],
              "protocol": {"metric": "NDCG@10", "chunk_tokens": 128, "precision": "fp32"}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "midway-tiny-gone.json").write_text(json.dumps(result))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "midway-tiny-gone.png").write_bytes(b"\x89PNG drawn on the machine that trained it")
    context = report.Context(results=tmp_path / "results", output=tmp_path / "RESULTS.md", plots=tmp_path / "plots")
    markdown = "\n".join(report.long_runs(context))
    assert "| step 5 | 0 |" in markdown
    assert "(plots/midway-tiny-gone.png)" in markdown

    (tmp_path / "plots" / "midway-tiny-gone.png").unlink()  # no plot anywhere: no link to a missing file
    assert "midway-tiny-gone.png" not in "\n".join(report.long_runs(context))
