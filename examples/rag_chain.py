"""Retrieval-augmented generation as an LCEL chain over an index built by `l2v index build`, offline.

    l2v index build demo-index docs/                       # any txt/md/html/pdf/jsonl/csv files
    python examples/rag_chain.py demo-index "What is LLM2Vec?" --task qa -k 3

The chain is `{"context": retriever | format_docs, "question": passthrough} | prompt | chat model
| StrOutputParser()`. The retriever is our `LLM2VecRetriever` (queries get the task instruction,
documents were encoded without one, as LLM2Vec does).

Why a fake chat model: this environment has no internet beyond PyPI and no chat LLM weights can
be downloaded, so the chat model is langchain-core's `FakeListChatModel`, which answers with a
scripted reply. Everything before it (retrieval, formatting, the prompt the model would see) is
real; pass any LangChain chat model (ChatOllama, ChatOpenAI, ...) to `build_chain` for real answers.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from retriever.langchain import LLM2VecRetriever

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question using only the numbered context passages; cite them as [n]. "
               "If the context does not contain the answer, say so.\n\nContext:\n{context}"),
    ("human", "{question}"),
])


def format_docs(docs: Sequence[Document]) -> str:
    """Number the retrieved chunks and name their documents, for the prompt."""
    return "\n\n".join(f"[{i}] ({doc.id}) {doc.page_content}" for i, doc in enumerate(docs, 1))


def offline_chat_model() -> BaseChatModel:
    """A scripted stand-in for a chat LLM (none can be downloaded here); see the module docstring."""
    return FakeListChatModel(responses=[
        "[offline stand-in model] A real chat model would answer here from the passages above, citing them as [n]."
    ])


def build_chain(retriever: BaseRetriever, llm: BaseChatModel) -> Runnable:
    """retriever | format | prompt | chat model | text."""
    return (
        {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()}
        | PROMPT
        | llm
        | StrOutputParser()
    )


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index_dir", help="an index made by `l2v index build`")
    parser.add_argument("question")
    parser.add_argument("-k", type=int, default=4, help="passages to retrieve (default 4)")
    parser.add_argument("--task", default=None, help="query task, e.g. qa, scifact (default: the index's)")
    args = parser.parse_args(argv)

    retriever = LLM2VecRetriever(index_dir=args.index_dir, k=args.k, task=args.task)
    docs = retriever.invoke(args.question)
    print("Retrieved context:\n" + format_docs(docs) + "\n")
    answer = build_chain(retriever, offline_chat_model()).invoke(args.question)
    print("Answer:\n" + answer)
    return answer


if __name__ == "__main__":
    main()
