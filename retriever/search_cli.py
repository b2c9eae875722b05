"""`l2v search`: query an index from the shell, as a ranked table or as JSON lines."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import click

from indexer.errors import IndexerError
from indexer.filter_cli import filter_options, filter_warnings, parse_filters
from indexer.llm2vec import LLM2VecError
from indexer.llm2vec.recipes import FUSION_FUNCTIONS

from .errors import RetrieverError
from .instructions import TASKS

if TYPE_CHECKING:
    from .retriever import Hit


def _table(hits: list[Hit], score: str) -> str:
    width = shutil.get_terminal_size((100, 20)).columns
    id_width = min(max((len(h.doc_id) for h in hits), default=6), 30)
    lines = [f"{'#':>3}  {score:>7}  {'document':<{id_width}}  text"]
    room = max(width - id_width - 17, 20)
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        text = text if len(text) <= room else text[: room - 1] + "…"
        doc_id = hit.doc_id if len(hit.doc_id) <= id_width else hit.doc_id[: id_width - 1] + "…"
        lines.append(f"{rank:>3}  {hit.score:>7.4f}  {doc_id:<{id_width}}  {text}")
    return "\n".join(lines)


@click.command(epilog="Tasks: " + ", ".join(TASKS) + ".")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("query")
@click.option("-k", "k", type=int, default=10, show_default=True, help="How many hits to return.")
@click.option("--task", "-t", help="Task whose instruction the query gets (default: the index's, else generic).")
@click.option("--instruction", "-i", help='Explicit query instruction instead of a task ("" for none).')
@filter_options
@click.option("--hybrid/--dense-only", default=None,
              help="How hits are ranked. Hybrid (the default on one index): the best dense hits and the "
                   "index's BM25 keyword hits fused, so exact words (names, codes, rare terms) count too, "
                   "as the index's recipe chose: by reciprocal rank (scores are RRF sums, about 1/61 for a "
                   "hit first in one list) or by a convex combination (weighted sums of min-max normalised "
                   "cosine and BM25 scores); the score column is named after it. "
                   "--dense-only: by cosine similarity alone, what --mmr and --shard use.")
@click.option("--fusion", type=click.Choice(FUSION_FUNCTIONS), default=None,
              help="Hybrid only: how the two lists fuse, rrf (reciprocal ranks) or convex (normalised "
                   "scores) [default: what the index's recipe chose, else rrf].")
@click.option("--dense-weight", type=click.FloatRange(min=0), default=None,
              help="Hybrid only: the dense list's weight, the keyword list's being 1 [default: the recipe's, else 1].")
@click.option("--mmr", is_flag=True, help="Diversify the hits (maximal marginal relevance over dense candidates).")
@click.option("--threshold", type=float, help="Drop hits whose cosine similarity to the query is below this "
              "(in either mode).")
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF indexes: lists to probe (more: better recall, slower) [default: the index's].")
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW indexes: candidate list size (more: better recall, slower) [default: 64].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per hit instead of a table.")
@click.option("--shard", "shards", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another index directory holding a part of the same corpus (same model); repeat. "
                   "The query is encoded once and the parts' hits merged by score.")
@click.option("--runtime", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True,
              help="What encodes the query: auto takes the encoder's cached ONNX Runtime export (made by "
                   "`l2v index build`; same vectors, starts in about a second), else torch; onnx makes the "
                   "export first if it is missing; torch always loads the torch model.")
def search(index_dir: str, query: str, k: int, task: str | None, instruction: str | None,
           conditions: tuple[str, ...], filter_json: str | None, hybrid: bool | None, fusion: str | None,
           dense_weight: float | None, mmr: bool,
           threshold: float | None, nprobe: int | None, ef_search: int | None, as_json: bool,
           shards: tuple[str, ...], runtime: str) -> None:
    """Search INDEX_DIR for QUERY and print the best chunks.

    The query is encoded with a task instruction (LLM2Vec style); documents were encoded without.

    \b
    Examples:
      l2v search my-index "what is LLM2Vec?"
      l2v search scifact-index "Vitamin D prevents fractures" --task scifact -k 5
      l2v search my-index "lora rank" --filter lang=en --filter "year>=2023"
      l2v search my-index "what is LLM2Vec?" --dense-only --threshold 0.5
      l2v search my-index "gpu memory" --filter-json '{"tags": {"$in": ["cuda", "rocm"]}}' --json
      l2v search part-0 "lora rank" --shard part-1 --shard part-2

    Filter values are read as JSON when they parse (year=2020 is a number, flag=true a boolean,
    'name="42"' the string 42), else as text; `l2v index delete` takes the same filters.
    """
    if task is not None and instruction is not None:
        raise click.UsageError("give --task or --instruction, not both")
    if (fusion is not None or dense_weight is not None) and (shards or mmr or hybrid is False):
        raise click.UsageError("--fusion and --dense-weight shape hybrid search; they do not combine with "
                               "--dense-only, --mmr or --shard")
    if shards and (mmr or hybrid):
        raise click.UsageError("--mmr and --hybrid work on one index, not across --shard parts "
                               "(searched --dense-only)")
    filter = parse_filters(conditions, filter_json)
    from .retriever import Retriever, is_hybrid  # the model libraries: only once a search runs
    from .sharded import ShardedRetriever

    column = "cosine"
    try:
        with filter_warnings():
            if shards:
                with ShardedRetriever.open([index_dir, *shards], runtime=runtime) as sharded:
                    hits = sharded.search(query, k, task=task, instruction=instruction, filter=filter,
                                          score_threshold=threshold, nprobe=nprobe, ef_search=ef_search)
            else:
                with Retriever.open(index_dir, runtime=runtime, fusion=fusion, dense_weight=dense_weight) as retriever:
                    hits = retriever.search(query, k, task=task, instruction=instruction, filter=filter,
                                            score_threshold=threshold, mmr=mmr, hybrid=hybrid, nprobe=nprobe,
                                            ef_search=ef_search)
                    if is_hybrid(hybrid, mmr):
                        column = retriever.fusion.function
    except (RetrieverError, IndexerError, LLM2VecError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        for rank, hit in enumerate(hits, 1):
            click.echo(json.dumps({"rank": rank, **hit.to_dict()}, ensure_ascii=False))
    elif hits:
        click.echo(_table(hits, column))
    else:
        click.echo("no hits", err=True)
