"""Build progress counts documents as they are committed, not as they are read."""

from __future__ import annotations

from click.testing import CliRunner

from indexer import Indexer
from indexer.cli import index as index_cli

DOCS = [{"id": f"d{i}", "text": f"document number {i} about retrieval"} for i in range(5)]


def test_progress_counts_committed_documents(tmp_path, tiny_encoder):
    with Indexer(tmp_path / "idx", tiny_encoder, batch_size=2) as indexer:
        calls, committed = [], []

        def progress(n):
            calls.append(n)
            committed.append(indexer.store.counts()["documents"])

        stats = indexer.add_documents(iter(DOCS), progress=progress)
        assert stats.added == 5
        assert calls == [2, 2, 1]
        assert committed == [2, 4, 5]  # each report follows the commit of the documents it counts
        calls.clear()
        indexer.add_documents(iter([*DOCS, {"id": "bad", "text": " "}]), errors="skip", progress=calls.append)
        assert sum(calls) == 6  # five unchanged documents and a skipped one are done with too


def test_cli_build_bar_reaches_the_documents_indexed(tmp_path, tiny_llama):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(f'{{"_id": "d{i}", "text": "document {i}"}}\n' for i in range(3)) + "not json\n")
    result = CliRunner().invoke(index_cli, ["build", str(tmp_path / "idx"), str(corpus), "--model", str(tiny_llama)])
    assert result.exit_code == 0, result.output
    assert "3/3" in result.output and "doc/s" in result.output
