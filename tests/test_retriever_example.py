"""examples/rag_chain.py runs offline end to end against an index built by the indexer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from indexer import Indexer
from retriever.langchain import LLM2VecRetriever

EXAMPLE = Path(__file__).parent.parent / "examples" / "rag_chain.py"


@pytest.fixture(scope="module")
def rag():
    spec = importlib.util.spec_from_file_location("rag_chain", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chain_feeds_retrieved_passages_to_the_model(rag, tmp_path: Path, tiny_llama: Path, capsys) -> None:
    index = tmp_path / "index"
    with Indexer(index, model=str(tiny_llama)) as indexer:
        indexer.add_documents([{"id": "a", "text": "LLM2Vec makes decoders into encoders."},
                               {"id": "b", "text": "Foxes are quick and brown."}])
    answer = rag.main([str(index), "What is LLM2Vec?", "-k", "2"])
    out = capsys.readouterr().out
    assert "[1] (" in out and "[2] (" in out and answer in out

    chain = rag.build_chain(LLM2VecRetriever(index_dir=str(index), k=1), FakeListChatModel(responses=["ok"]))
    assert chain.invoke("What is LLM2Vec?") == "ok"
    system = (chain.first | rag.PROMPT).invoke("What is LLM2Vec?").to_messages()[0].content  # what the model sees
    assert "Context:\n[1] (" in system and "[2]" not in system
