"""Instruction registry and the fusion functions of hybrid search."""

from __future__ import annotations

import numpy as np
import pytest

from retriever.errors import RetrieverError, UnknownTaskError
from retriever.fusion import convex_combination, reciprocal_rank_fusion
from retriever.instructions import DEFAULT_TASK, TASKS, get_task, resolve_instruction
from retriever.mmr import maximal_marginal_relevance

SCIFACT = "Given a scientific claim, retrieve documents that support or refute the claim"


def test_registry_has_the_llm2vec_instructions() -> None:
    assert get_task("scifact").instruction == SCIFACT
    assert get_task("SciFact").name == "scientific_claim"
    assert get_task("web-search").instruction == (
        "Given a web search query, retrieve relevant passages that answer the query")
    assert get_task("cacm").instruction == get_task("npl").instruction == "Given a query, retrieve relevant documents"
    for name in ("question_answering", "duplicate_questions", "argument_retrieval"):
        assert get_task(name).instruction.startswith("Given a")
    assert DEFAULT_TASK in TASKS


def test_resolution_order() -> None:
    assert resolve_instruction() == TASKS[DEFAULT_TASK].instruction
    assert resolve_instruction(default_task="scifact") == SCIFACT
    assert resolve_instruction(task="qa", default_task="scifact") == TASKS["question_answering"].instruction
    assert resolve_instruction(task="qa", instruction="  Find it  ") == "Find it"
    assert resolve_instruction(instruction="") is None
    assert resolve_instruction(task="symmetric") is None


def test_unknown_task_suggests() -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'scifcat'\. Did you mean 'scifact'") as info:
        resolve_instruction(task="scifcat", instruction="overridden but still checked")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownTaskError, match="Known tasks: generic"):
        get_task("zzz")
    with pytest.raises(RetrieverError, match="instruction must be a string"):
        resolve_instruction(instruction=3)  # type: ignore[arg-type]


def test_rrf_orders_by_summed_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], c=0)
    assert [key for key, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 1 + 1 / 2)
    assert fused[1][1] == pytest.approx(1 / 3 + 1 / 1)


def test_rrf_weights_and_ties() -> None:
    assert [k for k, _ in reciprocal_rank_fusion([["a"], ["b"]])] == ["a", "b"]  # tie: first seen first
    assert [k for k, _ in reciprocal_rank_fusion([["a"], ["b"]], weights=[1, 2])] == ["b", "a"]
    with pytest.raises(ValueError, match="2 weights for 1"):
        reciprocal_rank_fusion([["a"]], weights=[1, 2])


def test_convex_combination_weighs_min_max_normalised_scores() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}  # normalised: a 1, b 0.5, c 0
    keyword = {"c": 30.0, "d": 20.0, "a": 10.0}  # normalised: c 1, d 0.5, a 0; b missing scores 0
    fused = dict(convex_combination([dense, keyword], weights=[1.0, 1.0]))
    assert fused == pytest.approx({"a": 1.0, "b": 0.5, "c": 1.0, "d": 0.5})
    # RRF would rank c (ranks 3 and 1) above b and d; a wide score gap moves it here:
    ranked = [k for k, _ in convex_combination([dense, keyword], weights=[3.0, 1.0])]
    assert ranked == ["a", "b", "c", "d"]
    assert [k for k, _ in convex_combination([{"x": 2.0}, {}])] == ["x"]  # one candidate: scores 1
    with pytest.raises(ValueError, match="1 weights for 2"):
        convex_combination([dense, keyword], weights=[1.0])


def test_mmr_trades_relevance_for_diversity() -> None:
    query = np.array([1.0, 0.0, 0.0])
    near = np.array([0.99, 0.141, 0.0])  # almost the query
    near_twin = np.array([0.99, 0.141, 0.001])
    other = np.array([0.7, 0.0, 0.714])  # less relevant, different direction
    candidates = np.stack([near, near_twin, other])
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    assert maximal_marginal_relevance(query, candidates, k=3, lambda_mult=1.0) == [0, 1, 2]  # plain similarity
    assert maximal_marginal_relevance(query, candidates, k=2, lambda_mult=0.5) == [0, 2]  # skips the twin
    assert maximal_marginal_relevance(query, candidates, k=5) == maximal_marginal_relevance(query, candidates, k=3)
    assert sorted(maximal_marginal_relevance(query, candidates, k=3)) == [0, 1, 2]
    assert maximal_marginal_relevance(query, candidates[:0], k=3) == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        maximal_marginal_relevance(query, candidates, k=1, lambda_mult=1.5)
