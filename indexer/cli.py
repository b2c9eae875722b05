"""`l2v index`: build, add to, delete from and inspect indexes from the command line."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .documents import DEFAULT_MAX_CHARS
from .errors import IndexerError
from .filter_cli import filter_options, filter_warnings, parse_filters
from .ingest import IngestReport, RecordFields, count_documents, estimate_chunks, iter_documents
from .llm2vec import LLM2VecError
from .llm2vec.sources import DEFAULT_MODEL

if TYPE_CHECKING:  # the writer and the Ray engine import torch: only inside the commands that need them
    from .ray_engine import RayBuildStats, RayOptions
    from .writer import AddStats, Indexer

_SHOWN_SKIPS = 10


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


_WAIT_OPTION = click.option(
    "--wait", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
    help="If another process is writing the index, wait up to this long for it instead of failing at once.")


def _source_options(command: Callable) -> Callable:
    options = [
        click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)),
        click.option("--text-field", "text_fields", multiple=True, metavar="NAME",
                     help="JSONL/CSV field(s) holding the text, joined in order [default: title, text]."),
        click.option("--id-field", "id_fields", multiple=True, metavar="NAME",
                     help="JSONL/CSV field(s) holding the document id, first present wins [default: _id, id]."),
        click.option("--metadata-field", "metadata_fields", multiple=True, metavar="NAME",
                     help="JSONL/CSV field(s) to keep as metadata [default: every other field]."),
        click.option("--csv-strings", is_flag=True,
                     help="Keep CSV cells as strings [default: typed: 2021 -> int, 3.5 -> float, true -> bool, "
                          "empty -> null; 007 and id/text columns stay strings]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Chunks encoded (and committed) together."),
        click.option("--max-chars", type=click.IntRange(min=1), default=DEFAULT_MAX_CHARS, show_default=True,
                     help="Skip documents longer than this many characters."),
        _WAIT_OPTION,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fields(text_fields: tuple[str, ...], id_fields: tuple[str, ...], metadata_fields: tuple[str, ...],
            csv_strings: bool = False) -> RecordFields:
    defaults = RecordFields()
    return RecordFields(id_fields=id_fields or defaults.id_fields, text_fields=text_fields or defaults.text_fields,
                        metadata_fields=metadata_fields or None, csv_types=not csv_strings)


def _ingest(indexer: Indexer, sources: tuple[Path, ...], fields: RecordFields) -> None:
    report = IngestReport()
    started = time.perf_counter()
    try:
        total = count_documents(sources, fields)  # an upper bound, read cheaply first: the bar has an ETA
        # The bar counts documents as they are committed (or found unchanged, or skipped), at the
        # average rate since the start (smoothing=0): docs/s and ETA are those of the whole build.
        with logging_redirect_tqdm(), tqdm(total=total, unit="doc", desc="indexing", dynamic_ncols=True,
                                           smoothing=0) as bar:
            stats = indexer.add_documents(iter_documents(sources, fields, report), errors="skip",
                                          progress=bar.update)
            bar.total = bar.n  # the count was an upper bound (unreadable records never reach the indexer)
    except (IndexerError, LLM2VecError) as exc:
        raise _fail(exc) from None
    _summary(indexer, stats, report, time.perf_counter() - started)
    if report.files == 0 or (report.documents == 0 and report.skipped):
        raise click.ClickException("nothing could be read from the sources (see the skipped list above)")


def _ingest_ray(indexer: Indexer, sources: tuple[Path, ...], fields: RecordFields, options: RayOptions,
                max_chars: int) -> None:
    from .ray_engine import build_with_ray, count_sources

    started = time.perf_counter()
    try:
        with logging_redirect_tqdm(), tqdm(total=count_sources(sources, fields) or None, unit="doc",
                                           desc="indexing on ray", dynamic_ncols=True) as bar:
            stats: RayBuildStats = build_with_ray(indexer, sources, fields=fields, options=options,
                                                  max_chars=max_chars, progress=bar.update)
    except (IndexerError, LLM2VecError) as exc:
        raise _fail(exc) from None
    _summary(indexer, stats, IngestReport(files=stats.files, documents=stats.documents), time.perf_counter() - started)
    click.echo(f"shards: {stats.shards_encoded} encoded, {stats.shards_reused} reused from disk, "
               f"{stats.shards_skipped} already committed", err=True)
    if stats.files == 0 or (stats.documents == 0 and stats.skipped):
        raise click.ClickException("nothing could be read from the sources (see the skipped list above)")


def _summary(indexer: Indexer, stats: AddStats, report: IngestReport, seconds: float) -> None:
    written = stats.added + stats.replaced
    work = stats.encode_seconds + stats.store_seconds
    share = f"; encoding {100 * stats.encode_seconds / work:.0f}% of it" if work else ""
    click.echo(f"{written} documents indexed ({stats.added} new, {stats.replaced} replaced), "
               f"{stats.metadata_updated} metadata updates, {stats.unchanged} unchanged; {stats.chunks} chunks "
               f"in {seconds:.1f}s ({written / seconds if seconds else 0:.2f} docs/s{share})", err=True)
    skipped = report.skipped + stats.skipped
    if skipped:
        click.echo(f"skipped {len(skipped)}:", err=True)
        for what, why in skipped[:_SHOWN_SKIPS]:
            click.echo(f"  {what}: {why}", err=True)
        if len(skipped) > _SHOWN_SKIPS:
            click.echo(f"  ... and {len(skipped) - _SHOWN_SKIPS} more", err=True)
    counts = indexer.store.counts()
    click.echo(f"{indexer.path}: {counts['documents']} documents, {counts['chunks']} chunks", err=True)


@click.group("index")
def index() -> None:
    """Build and maintain an index: LLM2Vec vectors in FAISS, text and metadata in SQLite.

    \b
    An index is a directory: manifest.json, index.faiss and meta.sqlite.
    Builds are incremental and crash-safe: rerun an interrupted build and it
    picks up where it stopped (unchanged documents are skipped, none is lost
    or duplicated).

    \b
      l2v index build my-index docs/                # .txt .md .html .pdf .jsonl .csv
      l2v index add my-index more-docs/ notes.md     # with the index's own encoder
      l2v index delete my-index --filter year=2019
      l2v index stats my-index
    """


@index.command()
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@_source_options
@click.option("--model", "-m", default=None,
              help=f"Model directory, hub id, .gguf file or embedded name [default: {DEFAULT_MODEL}; "
                   "an existing index uses its own].")
@click.option("--adapter", "-a", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="PEFT LoRA adapter directory; repeat to stack.")
@click.option("--factory", default=None, metavar="FACTORY",
              help="FAISS index: Flat (default, exact), HNSW32, IVF1024,Flat, IVF1024,PQ64, OPQ64,IVF1024,PQ64, "
                   "or auto (by the number of chunks the sources will make).")
@click.option("--chunk-tokens", type=click.IntRange(min=1), default=None,
              help="Tokens per chunk [default: what the shipped recipe names (128 for the default model), "
                   "else the encoder's doc_max_length].")
@click.option("--overlap", type=click.IntRange(min=0), default=None, help="Tokens shared by neighbouring chunks [default: 32].")
@click.option("--document-instruction", default=None,
              help="Instruction to encode documents with [default: none, as LLM2Vec does].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: encode in this process; ray: read, chunk and encode on Ray Data workers, commit here "
                   "(pip install 'llm2vec-retriever[ray]'; also reads .parquet).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="[ray] Cluster to join: auto, HOST:6379 or ray://HOST:10001 [default: $RAY_ADDRESS, else a "
                   "local Ray instance].")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="[ray] Encoder replicas (Ray actors, each loads the model once) [default: 1].")
@click.option("--num-gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="[ray] GPUs per replica (0.5 packs two on a GPU) [default: 0, CPU].")
@click.option("--num-cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=None,
              help="[ray] CPUs (torch threads) per CPU replica [default: 1].")
@click.option("--shard-docs", type=click.IntRange(min=1), default=None,
              help="[ray] Documents per embedding shard: the unit of work, commit and resume [default: 256].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8", "auto"]), default="fp32", show_default=True,
              help="Encoder precision of a new index: bf16 where the CPU has AVX512-BF16 or AMX (about 2x fp32, "
                   "NDCG@10 up to 0.02 lower on our quick sets); int8 on ONNX Runtime (1.6-1.9x fp32, up to 0.05 "
                   "lower); auto picks the fastest of the two whose rows pass a self-check "
                   "(cosine 0.995 to fp32), else fp32.")
@click.option("--query-runtime/--no-query-runtime", default=True, show_default=True,
              help="After the build, export the encoder to ONNX Runtime once (cached), so `l2v search` starts "
                   "in a second or two without torch.")
def build(index_dir: Path, sources: tuple[Path, ...], text_fields, id_fields, metadata_fields, csv_strings: bool,
          batch_size: int,
          max_chars: int, wait: float, model: str | None, adapters: tuple[str, ...], factory: str | None,
          chunk_tokens: int | None, overlap: int | None, document_instruction: str | None, engine: str,
          ray_address: str | None, concurrency: int | None, num_gpus_per_worker: float | None,
          num_cpus_per_worker: float | None, shard_docs: int | None, precision: str, query_runtime: bool) -> None:
    """Create INDEX_DIR (or resume / update it) from SOURCE files and directories.

    \b
    Examples:
      l2v index build scifact-index data/scifact/corpus.jsonl        # BEIR: _id, title + text
      l2v index build notes-index ~/notes --chunk-tokens 256 --overlap 32
      l2v index build faq faq.csv --text-field question --text-field answer --id-field qid
      l2v index build big corpus.jsonl --factory auto --model ./my-llm2vec -a ./supervised
      l2v index build big corpus/ --engine ray --ray-address auto --concurrency 8 --num-gpus-per-worker 1
      l2v index build fast-index corpus.jsonl --precision auto        # bf16/int8 where faster here

    Killed or interrupted? Run the same command again: committed documents are
    kept and skipped, the rest are added. Changed documents are re-encoded.
    With --engine ray, committed shards are skipped and finished ones reused.
    """
    ray_settings = {"ray_address": ray_address, "concurrency": concurrency, "num_gpus_per_worker": num_gpus_per_worker,
                    "num_cpus_per_worker": num_cpus_per_worker, "shard_docs": shard_docs}
    if engine == "local" and any(v is not None for v in ray_settings.values()):
        given = ", ".join("--" + k.replace("_", "-") for k, v in ray_settings.items() if v is not None)
        raise click.UsageError(f"{given} only apply with --engine ray")
    from .ray_engine import RayOptions, ray_session
    from .writer import Indexer

    fields = _fields(text_fields, id_fields, metadata_fields, csv_strings)
    expected = functools.partial(estimate_chunks, sources) if factory == "auto" else None  # at the length it gets
    session = contextlib.nullcontext()
    if engine == "ray":
        defaults = RayOptions()
        options = RayOptions(address=ray_address, concurrency=concurrency or defaults.concurrency,
                             num_gpus_per_worker=num_gpus_per_worker or 0.0,
                             num_cpus_per_worker=num_cpus_per_worker or defaults.num_cpus_per_worker,
                             shard_docs=shard_docs or defaults.shard_docs)
        session = ray_session(options)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(session)  # Ray first: a missing package or cluster fails before the model loads
            indexer = stack.enter_context(Indexer(
                index_dir, model=model, adapters=adapters, factory=factory, chunk_tokens=chunk_tokens,
                overlap=overlap, batch_size=batch_size, document_instruction=document_instruction,
                expected_size=expected, max_chars=max_chars, wait=wait, precision=precision))
        except (IndexerError, LLM2VecError, ValueError) as exc:
            raise _fail(exc) from None
        if engine == "ray":
            _ingest_ray(indexer, sources, fields, options, max_chars)
        else:
            _ingest(indexer, sources, fields)
            if query_runtime:
                _prepare_query_runtime(indexer)


def _prepare_query_runtime(indexer: Indexer) -> None:
    """Export the index's (already loaded) torch encoder to ONNX Runtime once, so that searches load
    it without torch (`indexer.loading`); nothing to do when it is cached or the encoder is ONNX."""
    from .llm2vec.onnx_encoder import cached_entry, onnx_unavailable

    encoder = indexer.loaded_encoder
    if getattr(encoder, "runtime", None) != "torch" or onnx_unavailable() is not None:
        return
    if cached_entry(indexer.manifest["encoder"]["fingerprint"]) is not None:
        return
    from .llm2vec.onnx_export import onnx_encoder

    click.echo("Preparing the fast query runtime for this encoder (once; ONNX Runtime, same vectors)...", err=True)
    try:
        source = getattr(encoder, "fp32", encoder)  # a Bf16Encoder keeps the fp32 model it was made from
        if source.precision == "fp32":
            onnx_encoder(source)
        else:  # a model loaded in bf16 shares the fp32 fingerprint: export the fp32 model of the manifest
            from .loading import encoder_from_manifest

            encoder_from_manifest(indexer.manifest, index_dir=indexer.path, runtime="onnx")
    except LLM2VecError as exc:  # searches then load the torch model, as before
        click.echo(f"warning: no fast query runtime: {exc}", err=True)


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_source_options
def add(index_dir: Path, sources: tuple[Path, ...], text_fields, id_fields, metadata_fields, csv_strings: bool,
        batch_size: int, max_chars: int, wait: float) -> None:
    """Add (or update) documents from SOURCE in an existing INDEX_DIR, with its own encoder.

    \b
    Examples:
      l2v index add my-index new-papers/
      l2v index add my-index extra.jsonl --text-field body --id-field doc_id
    """
    from .writer import Indexer

    try:
        indexer = Indexer.open(index_dir, batch_size=batch_size, max_chars=max_chars, wait=wait)
    except (IndexerError, LLM2VecError, ValueError) as exc:
        raise _fail(exc) from None
    with indexer:
        _ingest(indexer, sources, _fields(text_fields, id_fields, metadata_fields, csv_strings))


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--id", "ids", multiple=True, help="Document id to delete; repeat for more.")
@filter_options
@_WAIT_OPTION
def delete(index_dir: Path, ids: tuple[str, ...], conditions: tuple[str, ...], filter_json: str | None,
           wait: float) -> None:
    """Delete documents (all their chunks) from INDEX_DIR by id and/or metadata filter.

    \b
    Examples:
      l2v index delete my-index --id doc-17 --id doc-18
      l2v index delete my-index --filter source=wiki --filter "year<2019"
      l2v index delete my-index --filter-json '{"tags": {"$in": ["draft", "spam"]}}'

    Filters are those of `l2v search` (values read as JSON when they parse: year=2019 is a
    number, 'year="2019"' a string); a field no document has is an error, not a silent no-op.
    """
    where = parse_filters(conditions, filter_json)
    if not ids and where is None:
        raise click.UsageError("give --id and/or --filter/--filter-json")
    from .writer import Indexer  # it loads the encoder only for writes that need it, never for deletes

    try:
        with Indexer.open(index_dir, wait=wait) as indexer, filter_warnings():
            deleted = indexer.delete(ids=list(ids) or None, where=where)
            counts = indexer.store.counts()
    except (IndexerError, LLM2VecError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(f"deleted {deleted} documents; {counts['documents']} documents, {counts['chunks']} chunks left")


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(index_dir: Path, as_json: bool) -> None:
    """Show counts, encoder, FAISS factory and sizes of INDEX_DIR (without loading the model).

    \b
    Example:
      l2v index stats my-index --json
    """
    from .store import IndexStore

    try:
        with IndexStore.open(index_dir) as store:
            info = store.stats()
    except IndexerError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    size = sum(info["bytes"].values())
    click.echo(f"{info['path']}\n"
               f"  documents  {info['documents']}\n"
               f"  chunks     {info['chunks']} (vectors in FAISS: {info['vectors']})\n"
               f"  encoder    {info['model']} (dim {info['dim']}, fingerprint {info['fingerprint']})\n"
               f"  chunking   {info['chunking']['chunk_tokens']} tokens, overlap {info['chunking']['overlap']}\n"
               f"  faiss      {info['factory']}{'' if info['trained'] else ' (untrained: exact search until enough vectors)'}\n"
               f"  on disk    {size / 2**20:.1f} MiB")


if __name__ == "__main__":  # `python -m indexer.cli build ...` is `l2v index build ...`
    index(prog_name="l2v index")
