"""`Retriever` over a real index built by `indexer.Indexer` with a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from indexer import Indexer, LLM2VecEncoder
from retriever import (
    FilterError,
    Hit,
    IndexMismatchError,
    IndexOpenError,
    Retriever,
    RetrieverError,
    UnknownFieldError,
    UnknownTaskError,
)
from retriever.instructions import get_task

TOPICS = ["fox", "encoder", "code", "claims", "question", "unicode"]
DOCS = [
    {
        "id": f"d{i:02d}",
        "text": f"Document {i} about {TOPICS[i % 6]}: " + " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4])
        + (" zebracorn" if i == 7 else ""),
        "metadata": {"lang": "en" if i % 3 else "fr", "year": 2015 + i, "tags": [TOPICS[i % 6], "all"]},
    }
    for i in range(24)
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: LLM2VecEncoder) -> Path:
    path = tmp_path_factory.mktemp("retriever") / "index"
    with Indexer(path, tiny_encoder, default_task="scifact") as indexer:
        indexer.add_documents(DOCS)
    return path


@pytest.fixture(scope="module")
def retriever(index_dir: Path, tiny_encoder: LLM2VecEncoder) -> Retriever:
    with Retriever.open(index_dir, tiny_encoder) as opened:
        yield opened


def cosine(encoder: LLM2VecEncoder, query: str, instruction: str | None, texts: list[str]) -> np.ndarray:
    q = encoder.encode(query, instruction, normalize=True)
    return encoder.encode(texts, normalize=True) @ q


def test_hits_are_hydrated_and_scored_by_cosine(retriever: Retriever, tiny_encoder: LLM2VecEncoder) -> None:
    hits = retriever.search("a quick fox", k=5, hybrid=False)
    assert len(hits) == 5 and all(isinstance(h, Hit) for h in hits)
    by_id = {d["id"]: d for d in DOCS}
    for hit in hits:
        assert hit.text == by_id[hit.doc_id]["text"]
        assert hit.metadata == by_id[hit.doc_id]["metadata"]
        assert (hit.start, hit.end) == (0, len(hit.text))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # the manifest's default task (scifact) is the query instruction; documents were encoded bare
    expected = cosine(tiny_encoder, "a quick fox", get_task("scifact").instruction, [d["text"] for d in DOCS])
    assert [h.doc_id for h in hits] == [DOCS[i]["id"] for i in np.argsort(-expected)[:5]]
    np.testing.assert_allclose(scores, np.sort(expected)[::-1][:5], atol=1e-4)
    assert json.loads(json.dumps(hits[0].to_dict()))["doc_id"] == hits[0].doc_id


def test_task_and_instruction_choose_the_query_prompt(retriever: Retriever, tiny_encoder: LLM2VecEncoder) -> None:
    texts = [d["text"] for d in DOCS]
    for kwargs, instruction in [
        ({"task": "web_search"}, get_task("web_search").instruction),
        ({"task": "qa", "instruction": "Find code"}, "Find code"),
        ({"instruction": ""}, None),
    ]:
        hits = retriever.search("what is an encoder", k=3, hybrid=False, **kwargs)
        expected = cosine(tiny_encoder, "what is an encoder", instruction, texts)
        np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1][:3], atol=1e-4)
    assert retriever.default_task == "scifact"


def test_search_batch_matches_single_searches(retriever: Retriever) -> None:
    queries = ["fox", "unicode text", "scientific claims"]
    batched = retriever.search_batch(queries, k=4, task="qa")
    for query, hits in zip(queries, batched):
        single = retriever.search(query, k=4, task="qa")
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in single]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)
    assert retriever.search_batch([], k=3) == []


def test_selective_filter_still_returns_k(retriever: Retriever) -> None:
    hits = retriever.search("fox", k=3, filter={"lang": "fr", "year": {"$gte": 2020}})
    assert len(hits) == 3  # d06, d09, ... : 6 French documents from 2020 on
    assert all(h.metadata["lang"] == "fr" and h.metadata["year"] >= 2020 for h in hits)
    rare = retriever.search("fox", k=10, filter={"year": {"$in": [2016, 2050]}})
    assert sorted(h.doc_id for h in rare) == ["d01"]  # fewer match than k: all of them
    tags = retriever.search("fox", k=10, filter={"$or": [{"tags": "code"}, {"tags": "fox"}]})
    assert {h.doc_id for h in tags} == {d["id"] for d in DOCS if {"code", "fox"} & set(d["metadata"]["tags"])}
    assert retriever.search("fox", k=3, filter={"lang": "de"}) == []
    assert len(retriever.search("fox", k=3, filter={})) == 3


def test_filter_errors(retriever: Retriever) -> None:
    with pytest.raises(UnknownFieldError, match="'lnag'; fields in this index: lang, tags, year"):
        retriever.search("fox", filter={"lnag": "en"})
    with pytest.raises(FilterError, match="unknown operator '\\$like'"):
        retriever.search("fox", filter={"lang": {"$like": "e%"}})
    with pytest.raises(FilterError, match=r"\$gt needs a string, number, boolean or null, got list"):
        retriever.search("fox", filter={"year": {"$gt": [2020]}})


def test_score_threshold(retriever: Retriever) -> None:
    hits = retriever.search("fox", k=24, hybrid=False)
    cut = hits[5].score
    kept = retriever.search("fox", k=24, score_threshold=cut, hybrid=False)
    assert [h.chunk_id for h in kept] == [h.chunk_id for h in hits if h.score >= cut]
    assert retriever.search("fox", k=5, score_threshold=1.01) == []


def test_mmr_diversifies_from_the_same_candidates(retriever: Retriever) -> None:
    plain = retriever.search("fox", k=5, hybrid=False)
    same = retriever.search("fox", k=5, mmr=True, lambda_mult=1.0)
    assert [h.chunk_id for h in same] == [h.chunk_id for h in plain]
    diverse = retriever.search("fox", k=5, mmr=True, lambda_mult=0.0, fetch_k=24)
    assert diverse[0].chunk_id == plain[0].chunk_id and len({h.chunk_id for h in diverse}) == 5
    assert [h.chunk_id for h in diverse] != [h.chunk_id for h in plain]


def test_hybrid_fuses_keyword_hits(retriever: Retriever) -> None:
    dense = retriever.search("zebracorn", k=24, hybrid=False)
    hybrid = retriever.search("zebracorn", k=5, hybrid=True, fetch_k=24)
    assert hybrid[0].doc_id == "d07"  # the only document with the word; RRF puts it first
    assert hybrid[0].score == pytest.approx(1 / 61 + 1 / (60 + [h.doc_id for h in dense].index("d07") + 1))
    filtered = retriever.search("zebracorn", k=5, hybrid=True, filter={"lang": "fr"})
    assert "d07" not in [h.doc_id for h in filtered] and len(filtered) == 5


def test_hybrid_weighs_the_dense_list_as_its_recipe_says(index_dir: Path, tiny_encoder: LLM2VecEncoder,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.llm2vec import recipes

    with Retriever.open(index_dir, tiny_encoder) as plain:
        assert plain.fusion == recipes.HybridFusion("rrf", 1.0)  # a recipe with no chosen fusion: equal RRF
        dense = [h.chunk_id for h in plain.search("zebracorn", k=24, hybrid=False)]
        equal = plain.search("zebracorn", k=5, fetch_k=24)
    monkeypatch.setitem(recipes.HYBRID_FUSIONS, plain.store.manifest["encoder"]["model"],
                        recipes.HybridFusion("rrf", 0.25))
    with Retriever.open(index_dir, tiny_encoder) as weighted, \
            Retriever.open(index_dir, tiny_encoder, dense_weight=0.0) as keyword_only:
        assert weighted.fusion.dense_weight == 0.25
        hits = weighted.search("zebracorn", k=5, fetch_k=24)
        rank = dense.index(hits[0].chunk_id) + 1
        assert hits[0].doc_id == "d07" and hits[0].score == pytest.approx(1 / 61 + 0.25 / (60 + rank))
        assert [h.score for h in hits] != [h.score for h in equal]
        assert keyword_only.search("zebracorn", k=1, fetch_k=24)[0].score == pytest.approx(1 / 61)
    with pytest.raises(RetrieverError, match="dense_weight"):
        Retriever.open(index_dir, tiny_encoder, dense_weight=-1)
    with pytest.raises(RetrieverError, match="fusion must be one of rrf, convex, got 'sum'"):
        Retriever.open(index_dir, tiny_encoder, fusion="sum")


def test_convex_fusion_adds_min_max_normalised_cosine_and_bm25(index_dir: Path, tiny_encoder: LLM2VecEncoder,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.llm2vec import recipes

    with Retriever.open(index_dir, tiny_encoder) as plain:
        model = plain.store.manifest["encoder"]["model"]
        cosine = {h.chunk_id: h.score for h in plain.search("zebracorn", k=24, hybrid=False)}
        keyword = dict(plain.store.keyword_search("zebracorn", 24))
    assert len(cosine) == 24 and len(keyword) == 1  # every chunk is a dense candidate; one document has the word
    low, high = min(cosine.values()), max(cosine.values())
    monkeypatch.setitem(recipes.HYBRID_FUSIONS, model, recipes.HybridFusion("convex", 0.5))
    with Retriever.open(index_dir, tiny_encoder) as convex, \
            Retriever.open(index_dir, tiny_encoder, fusion="rrf") as overridden:
        assert convex.fusion == recipes.HybridFusion("convex", 0.5)
        hits = convex.search("zebracorn", k=5, fetch_k=24)
        assert overridden.fusion == recipes.HybridFusion("rrf", 0.5)
    assert hits[0].doc_id in keyword and hits[0].doc_id == "d07"  # 1 + 0.5 x its cosine share beats 0.5
    for hit in hits:  # the lone keyword hit (a one-chunk document) normalises to 1; the dense side weighs 0.5
        expected = 0.5 * (cosine[hit.chunk_id] - low) / (high - low) + (hit.doc_id in keyword)
        assert hit.score == pytest.approx(expected, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_text_queries_are_hybrid_by_default(retriever: Retriever) -> None:
    default = retriever.search("zebracorn", k=5)
    hybrid = retriever.search("zebracorn", k=5, hybrid=True)
    dense = retriever.search("zebracorn", k=5, hybrid=False)
    assert [(h.chunk_id, h.score) for h in default] == [(h.chunk_id, h.score) for h in hybrid]
    assert default[0].doc_id == "d07" and [h.chunk_id for h in dense] != [h.chunk_id for h in default]
    assert retriever.search_batch(["zebracorn"], k=5)[0] == default
    # mmr ranks dense candidates: asking for it is enough, no hybrid=False needed
    assert [h.chunk_id for h in retriever.search("fox", k=5, mmr=True, lambda_mult=1.0)] == \
        [h.chunk_id for h in retriever.search("fox", k=5, hybrid=False)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"query": ""}, RetrieverError, "query 0 is empty"),
        ({"query": "   "}, RetrieverError, "query 0 is empty"),
        ({"query": None}, RetrieverError, "query must be a string"),
        ({"query": "x", "k": 0}, RetrieverError, "k must be a positive integer"),
        ({"query": "x", "k": -3}, RetrieverError, "k must be a positive integer"),
        ({"query": "x", "k": 2.5}, RetrieverError, "k must be a positive integer"),
        ({"query": "x", "k": True}, RetrieverError, "k must be a positive integer"),
        ({"query": "x", "task": "scifcat"}, UnknownTaskError, "Did you mean 'scifact'"),
        ({"query": "x", "mmr": True, "hybrid": True}, RetrieverError, "do not combine"),
        ({"query": "x", "lambda_mult": 2}, RetrieverError, "between 0 and 1"),
        ({"query": "x", "fetch_k": 0}, RetrieverError, "fetch_k must be a positive integer"),
    ],
)
def test_bad_input(retriever: Retriever, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        retriever.search(**kwargs)
    assert issubclass(error, ValueError)


def test_huge_k_returns_everything(retriever: Retriever) -> None:
    assert len(retriever.search("fox", k=10**12)) == len(DOCS) == len(retriever)


def test_search_by_vector(retriever: Retriever, tiny_encoder: LLM2VecEncoder) -> None:
    vector = tiny_encoder.encode("fox", get_task("scifact").instruction) * 7.0  # normalised for us
    by_vector = retriever.search_by_vector(vector, k=3)[0]
    assert [h.chunk_id for h in by_vector] == [h.chunk_id for h in retriever.search("fox", k=3, hybrid=False)]
    with pytest.raises(RetrieverError, match="32 dimensions"):
        retriever.search_by_vector(np.ones(5), k=3)


def test_open_errors(tmp_path: Path, index_dir: Path, tiny_model_factory) -> None:
    with pytest.raises(IndexOpenError, match="does not exist"):
        Retriever.open(tmp_path / "nope")
    other = LLM2VecEncoder.from_pretrained(tiny_model_factory("qwen2"))
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        Retriever.open(index_dir, other)


def test_open_loads_the_manifest_encoder_once(index_dir: Path) -> None:
    with Retriever.open(index_dir) as first, Retriever.open(index_dir) as second:
        assert first.encoder is second.encoder
        assert first.encoder.fingerprint() == first.store.manifest["encoder"]["fingerprint"]


def test_two_processes_read_the_same_index(retriever: Retriever, index_dir: Path) -> None:
    """This process holds the index open read-only while another one opens and searches it."""
    script = textwrap.dedent(f"""
        import json
        from retriever import Retriever
        with Retriever.open({str(index_dir)!r}) as r:
            print(json.dumps([h.doc_id for h in r.search("fox", k=3)]))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [h.doc_id for h in retriever.search("fox", k=3)]


def test_sharded_search_equals_one_index_over_the_whole_corpus(
    tmp_path: Path, index_dir: Path, tiny_encoder: LLM2VecEncoder
) -> None:
    from retriever import ShardedRetriever

    parts = [tmp_path / "part-0", tmp_path / "part-1", tmp_path / "part-2"]
    for n, part in enumerate(parts):
        with Indexer(part, tiny_encoder, default_task="scifact") as indexer:
            indexer.add_documents(DOCS[n::3])
    queries = ["a quick fox", "zebracorn", "unicode question"]
    with Retriever.open(index_dir, tiny_encoder) as whole, ShardedRetriever.open(parts, tiny_encoder) as sharded:
        assert len(sharded) == len(whole)
        expected = whole.search_batch(queries, k=7, filter={"lang": "en"}, hybrid=False)
        got = sharded.search_batch(queries, k=7, filter={"lang": "en"})
        for want, have in zip(expected, got):
            assert [h.doc_id for h in have] == [h.doc_id for h in want]
            np.testing.assert_allclose([h.score for h in have], [h.score for h in want], atol=1e-5)
        assert len(sharded.search("zebracorn", k=100)) == len(DOCS)


def test_sharded_search_refuses_parts_built_with_another_model(
    tmp_path: Path, index_dir: Path, tiny_model_factory
) -> None:
    from retriever import ShardedRetriever

    other = LLM2VecEncoder.from_pretrained(tiny_model_factory("llama"), pooling="weighted_mean")
    with Indexer(tmp_path / "other", other) as indexer:
        indexer.add_documents(DOCS[:3])
    with pytest.raises(IndexMismatchError):
        ShardedRetriever.open([index_dir, tmp_path / "other"])
