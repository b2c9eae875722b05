"""Retriever: open an index, encode queries with task instructions, search, return documents.

    from retriever import Retriever
    with Retriever.open("my-index") as r:
        for hit in r.search("what is LLM2Vec?", k=5, task="qa", filter={"lang": "en"}):
            print(hit.score, hit.doc_id, hit.text)

LangChain classes live in `retriever.langchain` (imported on demand, so the core stays light).
"""

from .errors import (
    FilterError,
    IndexMismatchError,
    IndexOpenError,
    RetrieverError,
    UnknownFieldError,
    UnknownTaskError,
)
from indexer.filters import compile_filter
from .fusion import reciprocal_rank_fusion
from .instructions import DEFAULT_TASK, TASKS, Task, get_task, resolve_instruction
from .mmr import maximal_marginal_relevance
from .retriever import Hit, Retriever
from .sharded import ShardedRetriever

__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "FilterError",
    "Hit",
    "IndexMismatchError",
    "IndexOpenError",
    "Retriever",
    "RetrieverError",
    "ShardedRetriever",
    "Task",
    "UnknownFieldError",
    "UnknownTaskError",
    "compile_filter",
    "get_task",
    "maximal_marginal_relevance",
    "reciprocal_rank_fusion",
    "resolve_instruction",
]
