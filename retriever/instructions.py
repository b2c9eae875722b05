"""Task instructions for queries, in the LLM2Vec / E5 style.

LLM2Vec encodes documents without an instruction and queries with one that names the task
("Given a scientific claim, retrieve documents that support or refute the claim"). Pick one by
`task=` name (case and `-`/space insensitive, aliases such as dataset names accepted), override
it with an explicit `instruction=`, or fall back to the index's default task, else `generic`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import RetrieverError, UnknownTaskError


@dataclass(frozen=True)
class Task:
    """A named retrieval task and the instruction its queries are encoded with."""

    name: str
    instruction: str
    description: str
    aliases: tuple[str, ...] = ()


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("generic", "Given a query, retrieve relevant documents",
             "Any ad-hoc search; the CACM / NPL style instruction.", ("default", "cacm", "npl", "search")),
        Task("web_search", "Given a web search query, retrieve relevant passages that answer the query",
             "Short web queries against passages (MS MARCO).", ("msmarco", "web")),
        Task("scientific_claim", "Given a scientific claim, retrieve documents that support or refute the claim",
             "Fact-checking scientific claims against abstracts (SciFact).", ("scifact", "claim")),
        Task("question_answering", "Given a question, retrieve passages that answer the question",
             "Natural-language questions against passages (NQ-style).", ("qa", "nq", "question")),
        Task("multi_hop_qa", "Given a multi-hop question, retrieve documents that can help answer the question",
             "Questions needing several documents (HotpotQA).", ("hotpotqa",)),
        Task("financial_qa", "Given a financial question, retrieve user replies that best answer the question",
             "Financial opinion questions (FiQA).", ("fiqa",)),
        Task("duplicate_questions",
             "Given a question, retrieve questions that are semantically equivalent to the given question",
             "Find re-asked questions (Quora, CQADupStack).", ("quora", "duplicates", "cqadupstack")),
        Task("argument_retrieval", "Given a claim, find documents that refute the claim",
             "Counter-arguments to a claim (ArguAna).", ("arguana", "counter_argument")),
        Task("argument_search",
             "Given a question, retrieve detailed and persuasive arguments that answer the question",
             "Arguments on a controversial question (Touche-2020).", ("touche2020", "touche")),
        Task("fact_checking", "Given a claim, retrieve documents that support or refute the claim",
             "General claims against an encyclopedia (FEVER).", ("fever", "climate_fever")),
        Task("medical_qa", "Given a question, retrieve relevant documents that best answer the question",
             "Nutrition and medical questions (NFCorpus).", ("nfcorpus",)),
        Task("covid", "Given a query on COVID-19, retrieve documents that answer the query",
             "COVID-19 literature search (TREC-COVID).", ("trec_covid",)),
        Task("citation_prediction",
             "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper",
             "Find papers a title cites (SCIDOCS).", ("scidocs",)),
        Task("entity_retrieval", "Given a query, retrieve relevant entity descriptions from DBPedia",
             "Entity search (DBPedia).", ("dbpedia", "entity")),
        Task("symmetric", "", "No instruction: queries are encoded like documents.", ("none", "no_instruction")),
    )
}
DEFAULT_TASK = "generic"

_ALIASES: dict[str, str] = {alias: t.name for t in TASKS.values() for alias in (t.name, *t.aliases)}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def get_task(name: str) -> Task:
    """The task called `name` (or one of its aliases); `UnknownTaskError` with suggestions otherwise."""
    if not isinstance(name, str):
        raise UnknownTaskError(f"task must be a string, got {type(name).__name__}")
    key = _normalise(name)
    if key in _ALIASES:
        return TASKS[_ALIASES[key]]
    close = difflib.get_close_matches(key, list(_ALIASES), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


def resolve_instruction(
    task: str | None = None, instruction: str | None = None, *, default_task: str | None = None
) -> str | None:
    """The query instruction to use: `instruction` if given, else `task`'s, else the default task's.

    An empty `instruction` (or the `symmetric` task) means no instruction; the result is then None.
    `task` is validated even when `instruction` overrides it, so a typo never passes silently.
    """
    chosen = get_task(task) if task is not None else None
    if instruction is not None:
        if not isinstance(instruction, str):
            raise RetrieverError(f"instruction must be a string, got {type(instruction).__name__}")
        return instruction.strip() or None
    if chosen is None:
        chosen = get_task(default_task or DEFAULT_TASK)
    return chosen.instruction or None
