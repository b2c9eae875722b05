"""Training data: plain text for MNTP/SimCSE, (query, positive, negative) pairs for supervised."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

# Query instructions per source of ../shared/data/qa_pairs, in the E5 / LLM2Vec style.
SOURCE_INSTRUCTIONS = {
    "snli": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "wikiqa": "Given a question, retrieve Wikipedia passages that answer the question",
    "trecqa": "Given a question, retrieve passages that answer the question",
    "msrp": "Retrieve semantically similar text",
    "twitter_url_para": "Retrieve tweets that are semantically similar to the given tweet",
    "bbc_headline": "Given a news headline, retrieve the news article",
    "wiki_title_lead": "Given a Wikipedia title, retrieve the passage that introduces it",
    "wiki_section": "Given the title of a Wikipedia section, retrieve the passage of that section",
}
DEFAULT_INSTRUCTION = "Given a query, retrieve relevant passages"


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    negative: str | None
    instruction: str
    source: str = ""


def read_texts(path: str | Path) -> list[str]:
    """Paragraphs from a .txt file (one per line) or a .jsonl file (a "text" field per line)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
    else:
        texts = lines
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"{path}: no text")
    return texts


def read_pairs(path: str | Path, instruction: str | None = None) -> list[Pair]:
    """Pairs from JSONL lines {"query", "positive", "negative"?, "source"?, "instruction"?}."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not row.get("query") or not row.get("positive"):
            raise ValueError(f"{path}:{number}: a pair needs non-empty 'query' and 'positive'")
        chosen = row.get("instruction") or instruction or SOURCE_INSTRUCTIONS.get(row.get("source", ""), DEFAULT_INSTRUCTION)
        pairs.append(Pair(row["query"], row["positive"], row.get("negative") or None, chosen, row.get("source") or ""))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def epoch_order(n: int, seed: int) -> Iterator[int]:
    """Indices 0..n-1 reshuffled every epoch, forever, reproducibly from `seed`."""
    epoch = 0
    while True:
        order = list(range(n))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        yield from order
        epoch += 1


def batches(n: int, batch_size: int, seed: int, skip: int = 0) -> Iterator[list[int]]:
    """Index batches for steps `skip`, `skip + 1`, ...: resuming at a step replays the same data."""
    order = epoch_order(n, seed)
    for _ in range(skip * batch_size):
        next(order)
    while True:
        yield [next(order) for _ in range(batch_size)]


def grouped_batches(groups: Sequence[Sequence[int]], batch_size: int, seed: int, skip: int = 0) -> Iterator[list[int]]:
    """Batches drawn from one group at a time (the official E5 / LLM2Vec loader's per-dataset
    batches): every epoch shuffles each group, cuts it into batches (a group's last short batch is
    dropped when it holds fewer than two examples: a lone pair has no in-batch negative) and
    shuffles the batches. Groups are visited in proportion to their size; resuming at step
    `skip` replays the same batches."""
    epoch = 0
    produced = 0
    while True:
        rng = random.Random(seed * 1000003 + epoch)
        epoch_batches = []
        for group in groups:
            order = list(group)
            rng.shuffle(order)
            epoch_batches += [order[i : i + batch_size] for i in range(0, len(order), batch_size)
                              if len(order[i : i + batch_size]) > 1]
        if not epoch_batches:
            raise ValueError("every group holds fewer than two examples: nothing to contrast")
        rng.shuffle(epoch_batches)
        for batch in epoch_batches:
            if produced >= skip:
                yield batch
            produced += 1
        epoch += 1
