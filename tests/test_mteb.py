"""retriever.mteb: MTEB runs an LLM2VecEncoder with LLM2Vec's query instructions, documents bare.

The retrieval task is built from examples/sample_corpus.jsonl and hand-written queries (no hub
download). Skipped without the optional `mteb` extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from datasets import Dataset  # noqa: E402  (a dependency of mteb)
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from retriever import LLM2VecMTEB  # noqa: E402
from retriever.mteb import LLM2VEC_TASK_INSTRUCTIONS  # noqa: E402

CORPUS = Path(__file__).parent.parent / "examples" / "sample_corpus.jsonl"
QUERIES = {
    "q1": ("How do plants turn sunlight into chemical energy?", "photosynthesis"),
    "q2": ("Why do bacteria stop responding to antibiotics?", "antibiotic-resistance"),
    "q3": ("How does the immune system remember a pathogen?", "vaccines"),
    "q4": ("What moves the continents?", "plate-tectonics"),
    "q5": ("Which index does FAISS use for nearest neighbour search?", "faiss"),
    "q6": ("How is bread leavened without commercial yeast?", "sourdough"),
}
INSTRUCTION = "Given a question, retrieve passages that answer the question"


class SampleCorpusRetrieval(AbsTaskRetrieval):
    """Six questions over the 24 documents of examples/sample_corpus.jsonl."""

    metadata = TaskMetadata(
        name="L2VSampleCorpusRetrieval", type="Retrieval", main_score="ndcg_at_10",
        description="Questions over the llm2vec-retriever sample corpus.", reference=None,
        dataset={"path": "local/sample-corpus", "revision": "1"}, category="t2t", eval_splits=["test"],
        eval_langs=["eng-Latn"], date=None, dialect=[], domains=[], task_subtypes=[], license="not specified",
        annotations_creators="expert-annotated", modalities=["text"], sample_creation="created",
        bibtex_citation="",
    )

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
        ids = {row["_id"] for row in rows}
        assert all(doc in ids for _, doc in QUERIES.values()), "a query names a document the corpus lacks"
        self.dataset = {"default": {"test": {
            "corpus": Dataset.from_list([{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows]),
            "queries": Dataset.from_list([{"id": q, "text": text} for q, (text, _) in QUERIES.items()]),
            "relevant_docs": {q: {doc: 1} for q, (_, doc) in QUERIES.items()},
            "top_ranked": None,
        }}}
        self.data_loaded = True


def batches(texts):
    """What MTEB passes to encode: an iterable of batches with a "text" column."""
    return [{"text": texts[:2]}, {"text": texts[2:]}]


def test_queries_get_the_task_instruction_and_documents_none(tiny_encoder):
    model = LLM2VecMTEB(tiny_encoder, instructions={SampleCorpusRetrieval.metadata.name: INSTRUCTION})
    texts = ["the lazy dog", "a question about claims", "retrieve passages"]
    scifact = mteb.get_task("SciFact").metadata

    def encode(metadata, prompt_type):
        return model.encode(batches(texts), task_metadata=metadata, hf_split="test", hf_subset="default",
                            prompt_type=prompt_type)

    official = LLM2VEC_TASK_INSTRUCTIONS["SciFact"]
    assert official.endswith("support or refute the claim:")
    np.testing.assert_allclose(encode(scifact, PromptType.query),
                               tiny_encoder.encode(texts, instruction=official, normalize=True), atol=1e-6)
    np.testing.assert_allclose(encode(scifact, PromptType.document), tiny_encoder.encode(texts, normalize=True),
                               atol=1e-6)
    local = SampleCorpusRetrieval.metadata
    np.testing.assert_allclose(encode(local, PromptType.query),
                               tiny_encoder.encode(texts, instruction=INSTRUCTION, normalize=True), atol=1e-6)
    assert not np.allclose(encode(local, PromptType.query), encode(local, PromptType.document), atol=1e-3)
    # a task in neither table falls back to MTEB's own prompt for it
    assert LLM2VecMTEB(tiny_encoder).instruction_for(local, PromptType.query) == model.get_instruction(
        local, PromptType.query)


def test_empty_texts_get_zero_vectors(tiny_encoder):
    model = LLM2VecMTEB(tiny_encoder)
    vectors = model.encode([{"text": ["the lazy dog", "  ", ""]}], task_metadata=SampleCorpusRetrieval.metadata,
                           hf_split="test", hf_subset="default", prompt_type=PromptType.document)
    assert vectors.shape == (3, tiny_encoder.dim)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert not vectors[1:].any()


def test_mteb_evaluates_the_wrapper_on_a_local_task(tiny_encoder):
    model = LLM2VecMTEB(tiny_encoder, instructions={SampleCorpusRetrieval.metadata.name: INSTRUCTION})
    assert model.mteb_model_meta.revision == tiny_encoder.fingerprint()
    result = mteb.evaluate(model, SampleCorpusRetrieval(), cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    assert 0.0 <= scores["ndcg_at_10"] <= 1.0
    assert scores["main_score"] == scores["ndcg_at_10"]


@pytest.mark.integration
def test_default_model_finds_the_answers():
    model = LLM2VecMTEB.from_pretrained("smollm2-135m",
                                        instructions={SampleCorpusRetrieval.metadata.name: INSTRUCTION})
    result = mteb.evaluate(model, SampleCorpusRetrieval(), cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    assert scores["ndcg_at_10"] >= 0.8, scores
