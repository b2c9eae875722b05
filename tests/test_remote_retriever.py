"""`LLM2VecRemoteRetriever` against a live `l2v serve`: langchain-tests' retriever suite, and the
same documents as the in-process `LLM2VecRetriever` on the same index."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from indexer import Indexer
from retriever import RetrieverError
from retriever.langchain import LLM2VecRemoteRetriever, LLM2VecRetriever
from retriever.server import ServerSettings
from serving import live_server

KEY = "remote-test-key"
TEXTS = ["foxes hunt at night", "encoders map text to vectors", "claims need evidence",
         "questions want answers", "unicode is everywhere"]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    path = tmp_path_factory.mktemp("remote") / "remote-index"
    with Indexer(path, model=str(tiny_llama)) as indexer:
        indexer.add_documents([{"id": f"t{i}", "text": t, "metadata": {"n": i, "odd": i % 2 == 1}}
                               for i, t in enumerate(TEXTS)])
    return path


@pytest.fixture(scope="module")
def url(index_dir: Path) -> Iterator[str]:
    with live_server(ServerSettings(indexes=(index_dir,), api_key=KEY)) as base:
        yield base


class TestRemoteRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, url: str) -> None:
        type(self).url = url

    @property
    def retriever_constructor(self) -> type[LLM2VecRemoteRetriever]:
        return LLM2VecRemoteRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"url": self.url, "index": "remote-index", "api_key": KEY, "task": "qa"}

    @property
    def retriever_query_example(self) -> str:
        return "what do encoders do?"


@pytest.mark.parametrize("options", [{}, {"k": 2, "filter": {"odd": True}}, {"search_type": "mmr", "k": 3},
                                     {"search_type": "hybrid", "k": 3}])
async def test_same_documents_as_the_local_retriever(url: str, index_dir: Path, options: dict[str, Any]) -> None:
    remote = LLM2VecRemoteRetriever(url=url, index="remote-index", api_key=KEY, task="qa", **options)
    with LLM2VecRetriever(index_dir=str(index_dir), task="qa", **options) as local:
        expected = local.invoke("night animals")
    for got in (remote.invoke("night animals"), await remote.ainvoke("night animals")):
        assert [(d.id, d.page_content) for d in got] == [(d.id, d.page_content) for d in expected]
        for doc, want in zip(got, expected):
            assert doc.metadata["retrieval"]["score"] == pytest.approx(want.metadata["retrieval"]["score"], abs=1e-5)
            assert {k: v for k, v in doc.metadata.items() if k != "retrieval"} == \
                   {k: v for k, v in want.metadata.items() if k != "retrieval"}


def test_errors_name_the_problem(url: str) -> None:
    with pytest.raises(RetrieverError, match="answered 401: invalid API key"):
        LLM2VecRemoteRetriever(url=url, index="remote-index", api_key="wrong").invoke("q")
    with pytest.raises(RetrieverError, match="no index named 'other'"):
        LLM2VecRemoteRetriever(url=url, index="other", api_key=KEY).invoke("q")
    with pytest.raises(RetrieverError, match="unknown task"):
        LLM2VecRemoteRetriever(url=url, index="remote-index", api_key=KEY).invoke("q", task="nope")
    with pytest.raises(RetrieverError, match="cannot reach"):
        LLM2VecRemoteRetriever(url="http://127.0.0.1:9", index="remote-index", timeout=2).invoke("q")
