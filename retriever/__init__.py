"""Retriever: open an index, encode queries with task instructions, search, return documents.

    from retriever import Retriever
    with Retriever.open("my-index") as r:
        for hit in r.search("what is LLM2Vec?", k=5, task="qa", filter={"lang": "en"}):
            print(hit.score, hit.doc_id, hit.text)

LangChain classes live in `retriever.langchain` (imported on demand, so the core stays light).
Names are exported lazily (`indexer.lazy`): `import retriever` loads no model library until a
name that needs one (`Retriever`, ...) is first used.
"""

from indexer.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DEFAULT_TASK": ".instructions",
    "TASKS": ".instructions",
    "FilterError": ".errors",
    "Hit": ".retriever",
    "IndexMismatchError": ".errors",
    "IndexOpenError": ".errors",
    "LLM2VecMTEB": ".mteb",
    "Retriever": ".retriever",
    "RetrieverError": ".errors",
    "ShardedRetriever": ".sharded",
    "Task": ".instructions",
    "UnknownFieldError": ".errors",
    "UnknownTaskError": ".errors",
    "compile_filter": "indexer.filters",
    "get_task": ".instructions",
    "maximal_marginal_relevance": ".mmr",
    "reciprocal_rank_fusion": ".fusion",
    "resolve_instruction": ".instructions",
})
# LLM2VecMTEB needs the optional `mteb` extra: importable by name, left out of `import *`.
__all__ = [name for name in __all__ if name != "LLM2VecMTEB"]
