"""`LLM2VecRemoteRetriever`: a LangChain retriever over an `l2v serve` server's `/v1/search`.

    from retriever.langchain import LLM2VecRemoteRetriever
    retriever = LLM2VecRemoteRetriever(url="http://127.0.0.1:8000", index="demo-index", k=4, task="qa")
    docs = retriever.invoke("what is LLM2Vec?")

The documents are those `LLM2VecRetriever` returns for the same index (same ids, text, metadata
and `retrieval` entry); the model stays loaded in the server, so the client starts in no time.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, SecretStr

from .errors import RetrieverError
from .retriever import Hit
from .search_settings import SearchSettings

class LLM2VecRemoteRetriever(SearchSettings, BaseRetriever):
    """Search a served index over HTTP. Every search option can also be passed per call:
    `retriever.invoke("q", k=3, filter={"lang": "en"})`. `api_key` is sent as a bearer token."""

    url: str = "http://127.0.0.1:8000"
    index: str
    api_key: SecretStr | None = None
    timeout: float = Field(default=60.0, gt=0)

    def _request(self, query: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
        body = {key: value for key, value in self.search_options(kwargs).items() if value is not None}
        body.update(index=self.index, query=query)
        headers = {"Authorization": f"Bearer {self.api_key.get_secret_value()}"} if self.api_key else {}
        return f"{self.url.rstrip('/')}/v1/search", body, headers

    def _documents(self, response: httpx.Response) -> list[Document]:
        from .langchain import hit_to_document  # here: retriever.langchain re-exports this class

        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise RetrieverError(f"{response.request.url} answered {response.status_code}: {message}")
        hits = response.json()["results"][0]
        return [hit_to_document(Hit(**hit)) for hit in hits]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        url, body, headers = self._request(query, kwargs)
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise RetrieverError(f"cannot reach the retrieval server at {url}: {exc}") from exc
        return self._documents(response)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        url, body, headers = self._request(query, kwargs)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RetrieverError(f"cannot reach the retrieval server at {url}: {exc}") from exc
        return self._documents(response)
