"""The BEIR harness behind benchmarks/beir.py and ablation.py: reduction, scoring, our pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
pytest.importorskip("ranx", reason="the benchmark harness needs the bench extra (pip install -e '.[bench]')")
pytest.importorskip("bm25s", reason="the benchmark harness needs the bench extra (pip install -e '.[bench]')")
import beir  # noqa: E402

TOPICS = ["photosynthesis in plants", "volcanic eruptions", "jazz music history", "protein folding",
          "ocean tides", "medieval castles", "quantum computing", "coffee roasting"]


@pytest.fixture
def dataset_dir(tmp_path):
    root = tmp_path / "toy"
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": topic.title(), "text": f"An article about {topic}, in detail."}
            for i, topic in enumerate(TOPICS)]
    docs += [{"_id": f"x{i}", "title": "", "text": f"Filler text number {i} about nothing much."} for i in range(30)]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": f"q{i}", "text": f"tell me about {topic}"} for i, topic in enumerate(TOPICS)]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    return root


def test_reduction_keeps_every_judged_document_of_the_sampled_queries(dataset_dir):
    full = beir.load_dataset(dataset_dir)
    assert (len(full.docs), len(full.queries)) == (38, 8) and full.docs["d0"].startswith("Photosynthesis In Plants\n")
    small = beir.load_dataset(dataset_dir, max_queries=3, max_docs=10)
    assert len(small.queries) == 3 and len(small.docs) == 10
    assert {d for judged in small.qrels.values() for d in judged} <= set(small.docs)
    assert small.sha256 == full.sha256  # the hash names the files, the protocol names the reduction
    assert beir.load_dataset(dataset_dir, max_queries=3, max_docs=10).docs == small.docs  # seeded


def test_bm25_finds_the_topic_and_scores_are_ranx_metrics(dataset_dir):
    dataset = beir.load_dataset(dataset_dir)
    scores = beir.evaluate(dataset, beir.run_bm25(dataset))
    assert scores == {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert beir.evaluate(dataset, {})["ndcg@10"] == 0.0  # a system that returns nothing scores 0


def test_llm2vec_system_runs_through_the_indexer_and_retriever(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    run = beir.run_llm2vec(dataset, tiny_encoder, "generic")
    assert set(run) == set(dataset.queries)
    assert all(set(ranked) <= set(dataset.docs) and len(ranked) == len(dataset.docs) for ranked in run.values())
    index_dirs = list((tmp_path / "work").glob("*/*"))
    assert [d.name for d in index_dirs] == [tiny_encoder.fingerprint()]
    assert beir.run_llm2vec(dataset, tiny_encoder, "generic") == run  # the kept index is reused as is
    fused = beir.run_llm2vec(dataset, tiny_encoder, "generic", hybrid=True)
    assert fused.keys() == run.keys() and fused != run
