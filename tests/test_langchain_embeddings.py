"""`LLM2VecEmbeddings` passes langchain-tests' standard embeddings suites over a tiny model."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from tiny_models import build_model_dir

from indexer import LLM2VecEncoder
from retriever.instructions import get_task
from retriever.langchain import LLM2VecEmbeddings


@cache
def tiny_model_dir() -> str:
    """One tiny model for the standard suites, whose parameters are class properties (no fixtures)."""
    return str(build_model_dir(Path(tempfile.mkdtemp(prefix="l2v-lc-")) / "llama", "llama"))


class TestLLM2VecEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[LLM2VecEmbeddings]:
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": tiny_model_dir(), "task": "scifact"}


class TestLLM2VecEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[LLM2VecEmbeddings]:
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": tiny_model_dir()}


def test_query_gets_the_task_instruction_documents_none(tiny_encoder: LLM2VecEncoder) -> None:
    embeddings = LLM2VecEmbeddings(encoder=tiny_encoder, task="scifact")
    claim = "Vitamin D reduces fractures."
    instruction = get_task("scifact").instruction
    assert embeddings.query_instruction == instruction
    np.testing.assert_allclose(embeddings.embed_query(claim),
                               tiny_encoder.encode(claim, instruction, normalize=True), atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_documents([claim])[0],
                               tiny_encoder.encode(claim, normalize=True), atol=1e-5)
    assert not np.allclose(embeddings.embed_query(claim), embeddings.embed_documents([claim])[0], atol=1e-3)
    assert np.linalg.norm(embeddings.embed_query(claim)) == pytest.approx(1.0, abs=1e-5)
    assert embeddings.embed_documents([]) == []


def test_explicit_instruction_overrides_task(tiny_encoder: LLM2VecEncoder) -> None:
    embeddings = LLM2VecEmbeddings(encoder=tiny_encoder, task="scifact", query_instruction="Find the code")
    assert embeddings.query_instruction == "Find the code"


def test_model_loads_once(tiny_llama: Path) -> None:
    first = LLM2VecEmbeddings(model=str(tiny_llama))
    second = LLM2VecEmbeddings(model=str(tiny_llama))
    assert first.encoder is second.encoder


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown task .scifcat."):  # pydantic wraps it
        LLM2VecEmbeddings(encoder=None, model="unused", task="scifcat")
    with pytest.raises(ValueError, match="batch_size"):
        LLM2VecEmbeddings(model="unused", batch_size=0)
