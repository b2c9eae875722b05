"""The BEIR harness behind benchmarks/beir.py and ablation.py: reduction, scoring, our pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.vectors import normalize_rows

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
    assert [d.name for d in index_dirs] == [
        f"{tiny_encoder.fingerprint()}-{tiny_encoder.precision}-chunk{tiny_encoder.config.doc_max_length}"]
    assert beir.run_llm2vec(dataset, tiny_encoder, "generic") == run  # the kept index is reused as is
    fused = beir.run_llm2vec(dataset, tiny_encoder, "generic", hybrid=True)
    assert fused.keys() == run.keys() and fused != run


def test_a_bf16_system_builds_its_own_index(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    """bf16 shares fp32's fingerprint: keyed by it alone, the bf16 system reused the fp32 index and
    only its queries were bf16."""
    from indexer.llm2vec import precision as precision_module
    from indexer.llm2vec.precision import apply_precision

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    dataset = beir.load_dataset(dataset_dir)
    beir.run_llm2vec(dataset, tiny_encoder, "generic")
    beir.run_llm2vec(dataset, apply_precision(tiny_encoder, "bf16"), "generic")
    names = sorted(d.name for d in (tmp_path / "work").glob("*/*"))
    chunking = f"chunk{tiny_encoder.config.doc_max_length}"
    assert names == [f"{tiny_encoder.fingerprint()}-bf16-{chunking}", f"{tiny_encoder.fingerprint()}-fp32-{chunking}"]


def test_a_chunk_size_builds_its_own_index_of_chunks_that_size(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    """`--chunk-tokens`: an index of the asked chunk size, kept apart from the default one (which the
    first build made at the encoder's doc_max_length), so neither resumes the other."""
    from indexer import IndexStore

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    default = beir.build_index(dataset, tiny_encoder)
    small = beir.build_index(dataset, tiny_encoder, chunk_tokens=4)
    assert small.name == default.name.replace(f"chunk{tiny_encoder.config.doc_max_length}", "chunk4")
    with IndexStore.open(default) as whole, IndexStore.open(small) as windows:
        assert whole.manifest["chunking"]["chunk_tokens"] == tiny_encoder.config.doc_max_length
        assert windows.manifest["chunking"] == {"chunk_tokens": 4, "overlap": 1}
        assert whole.counts()["chunks"] == len(dataset.docs) < windows.counts()["chunks"]
    run = beir.run_llm2vec(dataset, tiny_encoder, "generic", chunk_tokens=4)
    assert all(set(ranked) <= set(dataset.docs) for ranked in run.values())  # chunks are scored as documents


def test_the_default_index_is_keyed_by_the_chunk_size_it_gets(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    """When a recipe's default chunk size changes, the default benchmark index is a new one: the old
    one (its manifest keeps the old size) must not be resumed and scored as the new default."""
    from indexer import IndexStore
    from indexer.llm2vec import recipes

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    before = beir.build_index(dataset, tiny_encoder)
    monkeypatch.setitem(recipes.INDEX_CHUNK_TOKENS, tiny_encoder.spec()["model"], 4)
    after = beir.build_index(dataset, tiny_encoder)
    assert after != before
    with IndexStore.open(after) as store:
        assert store.manifest["chunking"]["chunk_tokens"] == 4


# ----------------------------------------------------------------------------- the embedding cache
from _embedding_cache import EmbeddingCache  # noqa: E402


class Interrupted(RuntimeError):
    """Stands in for a kill: raised by the encoder after some batches."""


def fake_encoder(calls: list[list[str]], *, fail_after: int | None = None):
    """A deterministic text -> vector function that records its calls and can fail mid-run."""
    import numpy as np

    def encode(texts: list[str]):
        if fail_after is not None and len(calls) >= fail_after:
            raise Interrupted(f"killed after {fail_after} batches")
        calls.append(list(texts))
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(8) for t in texts])

    return encode


def test_a_killed_run_resumes_without_re_encoding_cached_texts(tmp_path):
    import numpy as np

    texts = [f"document {i} about tides" for i in range(50)] + ["document 0 about tides"]  # one repeated
    fresh = fake_encoder([])(texts)
    first_calls: list[list[str]] = []
    with pytest.raises(Interrupted):
        EmbeddingCache(tmp_path, "enc-1", "toy").encode(texts, fake_encoder(first_calls, fail_after=3), chunk=8,
                                                        progress=False)
    assert len(first_calls) == 3 and len(list((tmp_path / "enc-1" / "toy").glob("shard-*.safetensors"))) == 3
    cache = EmbeddingCache(tmp_path, "enc-1", "toy")  # the next run
    assert len(cache) == 24
    resumed_calls: list[list[str]] = []
    vectors = cache.encode(texts, fake_encoder(resumed_calls), chunk=8, progress=False)
    done = {t for call in first_calls for t in call}
    assert sum(map(len, resumed_calls)) == 50 - 24 and not done & {t for call in resumed_calls for t in call}
    np.testing.assert_allclose(vectors, fresh, rtol=0, atol=1e-6)  # cached rows equal fresh ones, in order
    again: list[list[str]] = []
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, "enc-1", "toy").encode(texts, fake_encoder(again),
                                                                                   progress=False), vectors)
    assert again == []  # all cached
    assert len(EmbeddingCache(tmp_path, "enc-2", "toy")) == 0  # another encoder fingerprint, another cache


def test_a_torn_shard_is_moved_aside_and_its_texts_encoded_again(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", "toy")
    cache.encode(["a", "b", "c"], fake_encoder([]), chunk=2, progress=False)
    shard = sorted((tmp_path / "enc" / "toy").glob("shard-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        reopened = EmbeddingCache(tmp_path, "enc", "toy")
    assert len(reopened) == 1 and shard.with_suffix(".bad").exists()
    calls: list[list[str]] = []
    reopened.encode(["a", "b", "c"], fake_encoder(calls), progress=False)
    assert calls == [["a", "b"]]


def count_document_encodes(encoder, monkeypatch) -> list[str]:
    """The texts `encoder` is asked to encode without an instruction (documents), as they come."""
    encoded: list[str] = []
    original = encoder.encode

    def counting(texts, instruction=None, **kwargs):
        if instruction is None and not isinstance(texts, str):
            encoded.extend(texts)
        return original(texts, instruction, **kwargs)

    monkeypatch.setattr(encoder, "encode", counting)
    return encoded


def test_bf16_chunk_vectors_are_cached_apart_from_fp32s(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    """bf16 shares fp32's fingerprint: with the cache keyed by it alone, `--precision bf16` wrote
    its vectors where a later fp32 run read them back as its own."""
    from indexer.llm2vec import precision as precision_module
    from indexer.llm2vec.precision import apply_precision

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    dataset = beir.load_dataset(dataset_dir)
    cache_root = tmp_path / "cache"
    beir.run_llm2vec(dataset, apply_precision(tiny_encoder, "bf16"), "generic", cache_root=cache_root)
    encoded = count_document_encodes(tiny_encoder, monkeypatch)
    beir.run_llm2vec(dataset, tiny_encoder, "generic", cache_root=cache_root)
    assert len(encoded) == len(dataset.docs)  # fp32 encodes its own, none read from bf16's


def test_llm2vec_system_reads_chunk_vectors_from_the_cache(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    original = tiny_encoder.encode
    encoded = count_document_encodes(tiny_encoder, monkeypatch)
    cache_root = tmp_path / "cache"
    run = beir.run_llm2vec(dataset, tiny_encoder, "generic", cache_root=cache_root)
    assert len(encoded) == len(dataset.docs)  # one chunk per toy document, each encoded once
    cache = EmbeddingCache(cache_root, beir.vectors_key(tiny_encoder), dataset.name)
    texts = list(dataset.docs.values())
    np.testing.assert_allclose(cache.get(texts), original(texts, normalize=True), atol=1e-5)
    encoded.clear()
    import shutil

    shutil.rmtree(tmp_path / "work")  # a new index of the same texts (another mode, the ablation)
    assert beir.run_llm2vec(dataset, tiny_encoder, "generic", cache_root=cache_root) == run
    assert encoded == []  # every chunk vector came from the cache


def test_keyword_systems_match_word_forms_only_when_stemmed(tmp_path):
    root = tmp_path / "forms"
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": "d0", "title": "", "text": "Erupting volcanoes and their eruptions"},
            {"_id": "d1", "title": "", "text": "Roasted coffee beans"},
            {"_id": "d2", "title": "", "text": "Castles of the medieval period"}]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "volcano erupts"}) + "\n"
                                        + json.dumps({"_id": "q1", "text": "roasting bean"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\n")
    dataset = beir.load_dataset(root)
    assert beir.evaluate(dataset, beir.run_keywords(dataset))["mrr@10"] == 1.0
    assert beir.evaluate(dataset, beir.run_keywords(dataset, stemmed=False))["mrr@10"] == 0.0
    pytest.importorskip("Stemmer", reason="bm25-porter needs PyStemmer (the bench extra)")
    assert beir.evaluate(dataset, beir.run_bm25(dataset, stem=True))["mrr@10"] == 1.0


def test_fusion_runs_are_the_retrievers_hybrid_search(dataset_dir, tiny_encoder, tmp_path, monkeypatch):
    import fusion
    from indexer.llm2vec import recipes

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    runs = dict(fusion.weighted_runs(dataset, tiny_encoder, "generic", [0.0, 1.0], ["rrf", "convex"],
                                     [beir.DEPTH * 3, 2], cache_root=None))
    assert set(runs) == {(f, w, k) for f in ("rrf", "convex") for w in (0.0, 1.0) for k in (beir.DEPTH * 3, 2)}
    assert all(len(ranked) <= 2 for (_, _, k), run in runs.items() if k == 2 for ranked in run.values())

    def same(run, expected):
        assert {q: list(r) for q, r in run.items()} == {q: list(r) for q, r in expected.items()}
        for q, ranked in run.items():
            assert list(ranked.values()) == pytest.approx(list(expected[q].values()))

    same(runs["rrf", 1.0, beir.DEPTH * 3], beir.run_llm2vec(dataset, tiny_encoder, "generic", hybrid=True))
    same(runs["convex", 0.0, beir.DEPTH * 3], beir.run_llm2vec(dataset, tiny_encoder, "generic", hybrid=True,
                                                               fusion="convex", dense_weight=0.0))
    monkeypatch.setitem(recipes.HYBRID_FUSIONS, tiny_encoder.spec()["model"], recipes.HybridFusion("convex", 1.0))
    same(runs["convex", 1.0, beir.DEPTH * 3], beir.run_llm2vec(dataset, tiny_encoder, "generic", hybrid=True))
    assert beir.evaluate(dataset, runs["rrf", 0.0, beir.DEPTH * 3]) == beir.evaluate(dataset, beir.run_keywords(dataset))


def test_a_rerun_replaces_its_systems_rows_and_keeps_the_others(dataset_dir, tmp_path):
    output = tmp_path / "beir-toy.json"
    assert beir.main(["--data", str(dataset_dir), "--full", "--systems", "bm25,keywords", "--output", str(output)]) == 0
    first = json.loads(output.read_text())["rows"]
    assert beir.main(["--data", str(dataset_dir), "--full", "--systems", "keywords-unstemmed,keywords",
                      "--output", str(output)]) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [r["name"] for r in rows] == ["bm25", "keywords-unstemmed", "keywords"]
    assert rows[0] == {**first[0]} and rows[0]["command"] and "cpu_flags" in rows[0]
    assert rows[2]["date"] >= first[1]["date"] and rows[2]["ndcg@10"] == first[1]["ndcg@10"]
    beir.main(["--data", str(dataset_dir), "--max-queries", "3", "--systems", "bm25", "--output", str(output)])
    assert [r["name"] for r in json.loads(output.read_text())["rows"]] == ["bm25"]  # another protocol: a new table


def test_model_speed_times_both_models_on_the_same_texts(dataset_dir, tiny_model_factory, tmp_path):
    import model_speed

    a, b = tiny_model_factory("llama"), tiny_model_factory("qwen2", adds_bos=False)
    output = tmp_path / "model_speed.json"
    assert model_speed.main(["--data", str(dataset_dir), "--models", f"{a},{b}", "--passages", "3",
                             "--queries", "2", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["cases"]["passages"]["texts"] == 3 and result["cases"]["queries"]["instruction"]
    assert list(result["rows"]) == [str(a), str(b)]
    for row in result["rows"].values():
        assert len(row["passages"]["seconds"]) == len(row["queries"]["seconds"]) == 3  # one per round
        assert row["passages"]["tokens"] > row["queries"]["tokens"] > 0
    ratio = result["rows"][str(b)]["passages"]["texts_per_s"] / result["rows"][str(a)]["passages"]["texts_per_s"]
    assert result["ratio_b_over_a"]["passages"] == pytest.approx(ratio, abs=1e-3)
    for models in (str(a), f"{a},{a}"):
        with pytest.raises(SystemExit):
            model_speed.main(["--data", str(dataset_dir), "--models", models, "--output", str(output)])


def test_centering_scores_as_is_what_the_retrievers_dense_search_scores(dataset_dir, tiny_encoder, tmp_path,
                                                                        monkeypatch):
    import centering

    monkeypatch.setattr(beir, "WORK", tmp_path / "work")
    dataset = beir.load_dataset(dataset_dir)
    runs = centering.centred_runs(dataset, tiny_encoder, "generic", paragraphs=["A paragraph of prose."] * 3,
                                  pair_queries=["a question", "another question"], sample=5, cache_root=None)
    assert set(runs) == {"as-is", "oracle", "training-text", "corpus-sample", "projection"}
    expected = beir.run_llm2vec(dataset, tiny_encoder, "generic")
    assert {q: list(r)[:10] for q, r in runs["as-is"].items()} == {q: list(r)[:10] for q, r in expected.items()}
    for q, ranked in runs["as-is"].items():
        assert list(ranked.values())[:10] == pytest.approx(list(expected[q].values())[:10], abs=1e-5)
    assert all(set(run) == set(dataset.queries) for run in runs.values())


def test_centering_by_the_query_sides_mean_undoes_a_shared_query_offset():
    import centering

    rng = np.random.default_rng(0)
    topics = np.eye(8)
    shared = rng.normal(size=8)
    docs = shared + 0.2 * topics  # doc i leans to topic i
    queries = shared + 0.2 * topics + 0.3 * topics[0]  # every query also leans to topic 0 (its instruction, say)
    chunk_docs = [f"d{i}" for i in range(8)]
    query_ids = [f"q{i}" for i in range(8)]
    as_is = centering.exact_run(query_ids, queries, docs, chunk_docs)
    centred = centering.exact_run(query_ids, queries - queries.mean(0), docs - docs.mean(0), chunk_docs)
    assert [next(iter(as_is[q])) for q in query_ids] == ["d0"] * 8
    assert [next(iter(centred[q])) for q in query_ids] == chunk_docs
    projected = centering.project_out(queries, shared)
    assert np.allclose(projected @ normalize_rows(shared), 0.0, atol=1e-6)  # float32, as vectors are


def test_the_report_tabulates_centering_variants_per_set_and_split(tmp_path):
    import report

    for dataset, split, scores in (("scifact", "train", (0.61, 0.63)), ("cacm", "test", (0.37, 0.40))):
        rows = [{"variant": v, "ndcg@10": s} for v, s in zip(("as-is", "oracle"), scores)]
        payload = {"dataset": dataset, "split": split, "rows": rows, "command": "python benchmarks/centering.py"}
        (tmp_path / f"centering-{dataset}-{split}.json").write_text(json.dumps(payload))
    context = report.Context(results=tmp_path, output=tmp_path / "RESULTS.md", plots=tmp_path / "plots")
    lines = report.centering(context)
    assert "| variant | cacm (test) | scifact (train) |" in lines
    assert "| as-is | 0.370 | 0.610 |" in lines and "| oracle | 0.400 | 0.630 |" in lines
    empty = report.Context(results=tmp_path / "none", output=tmp_path / "RESULTS.md", plots=tmp_path / "plots")
    assert report.centering(empty) == []
