"""`l2v search`: table and JSON output, filters from the shell, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import Indexer
from retriever.cli import main
from indexer.filter_cli import parse_filters, parse_value

DOCS = [{"id": f"doc-{i}", "text": f"Passage {i}: " + ["foxes run", "encoders embed", "claims need proof"][i % 3],
         "metadata": {"lang": "en" if i % 2 else "fr", "year": 2018 + i}} for i in range(8)]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> str:
    path = tmp_path_factory.mktemp("cli") / "index"
    with Indexer(path, model=str(tiny_llama)) as indexer:
        indexer.add_documents(DOCS)
    return str(path)


def run(*args: str) -> tuple[int, str]:
    """Exit code and stdout (stderr carries model-loading progress), or the error output on failure."""
    result = CliRunner().invoke(main, ["search", *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_table(index_dir: str) -> None:
    code, out = run(index_dir, "what do encoders do", "-k", "3", "--task", "qa")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["#", "rrf", "document", "text"] and len(lines) == 4  # hybrid by default
    assert lines[1].split()[0] == "1" and lines[1].split()[2].startswith("doc-")
    code, dense = run(index_dir, "what do encoders do", "-k", "3", "--task", "qa", "--dense-only")
    assert code == 0 and dense.splitlines()[0].split() == ["#", "cosine", "document", "text"]
    assert 0.0 < float(lines[1].split()[1]) <= 2 / 61  # an RRF sum: at most first in both lists


def test_table_names_the_fusion_of_the_index_recipe(index_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.llm2vec import recipes

    monkeypatch.setitem(recipes.HYBRID_FUSIONS, json.loads((Path(index_dir) / "manifest.json").read_text())
                        ["encoder"]["model"], recipes.HybridFusion("convex", 1.0))
    code, out = run(index_dir, "what do encoders do", "-k", "3")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["#", "convex", "document", "text"]
    assert 0.0 <= float(lines[1].split()[1]) <= 2.0  # two normalised scores of weight 1


def test_fusion_and_dense_weight_options_mirror_retriever_open(index_dir: str) -> None:
    code, out = run(index_dir, "what do encoders do", "-k", "3", "--fusion", "convex", "--dense-weight", "0")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split()[1] == "convex" and float(lines[1].split()[1]) == pytest.approx(1.0)  # keywords alone
    code, weighted = run(index_dir, "what do encoders do", "-k", "3", "--dense-weight", "0.25", "--json")
    assert code == 0 and 0 < json.loads(weighted.splitlines()[0])["score"] <= 1.25 / 61
    code, out = run(index_dir, "proof", "--fusion", "rrf", "--dense-only")
    assert code != 0 and "--fusion and --dense-weight shape hybrid search" in out
    code, out = run(index_dir, "proof", "--dense-weight", "-1")
    assert code != 0 and "-1" in out


def test_default_search_is_hybrid_and_dense_only_opts_out(index_dir: str) -> None:
    def ranked(*args: str) -> list[tuple[str, float]]:
        code, out = run(index_dir, "proof", "-k", "4", "--json", *args)
        assert code == 0, out
        return [(row["doc_id"], row["score"]) for row in map(json.loads, out.strip().splitlines())]

    assert ranked() == ranked("--hybrid") != ranked("--dense-only")


def test_json_lines_with_filters(index_dir: str) -> None:
    code, out = run(index_dir, "foxes", "-k", "10", "--filter", "lang=en", "-f", "year>=2021", "--json")
    assert code == 0, out
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["doc_id"] for r in rows} == {d["id"] for d in DOCS if d["metadata"]["lang"] == "en"
                                         and d["metadata"]["year"] >= 2021}
    assert set(rows[0]) >= {"score", "doc_id", "text", "metadata", "chunk_id"}


def test_hybrid_and_filter_json(index_dir: str) -> None:
    code, out = run(index_dir, "proof", "-k", "2", "--hybrid", "--json",
                    "--filter-json", '{"$or": [{"year": 2020}, {"year": 2023}]}')
    assert code == 0, out
    assert sorted(json.loads(line)["doc_id"] for line in out.strip().splitlines()) == ["doc-2", "doc-5"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["", "-k", "3"], 1, "query 0 is empty"),
        (["fox", "-k", "0"], 1, "k must be a positive integer"),
        (["fox", "--task", "scifcat"], 1, "Did you mean 'scifact'"),
        (["fox", "--task", "qa", "--instruction", "x"], 2, "--task or --instruction, not both"),
        (["fox", "--filter", "lnag=en"], 1, "no document has a metadata field 'lnag'"),
        (["fox", "--filter", "=en"], 2, "is not KEY=VALUE"),
        (["fox", "--filter-json", "{oops"], 2, "not valid JSON"),
        (["fox", "--filter-json", '{"year": {"$near": 1}}'], 1, "unknown operator '$near'"),
        (["fox", "--mmr", "--hybrid"], 1, "do not combine"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(index_dir: str, args: list[str], code: int, message: str) -> None:
    exit_code, out = run(index_dir, *args)
    assert exit_code == code and message in out and "Traceback" not in out


def test_not_an_index(tmp_path: Path) -> None:
    code, out = run(str(tmp_path), "fox")
    assert code == 1 and "manifest.json is missing" in out


def test_filter_parsing() -> None:
    assert parse_value("2020") == 2020 and parse_value("true") is True and parse_value("null") is None
    assert parse_value('"2020"') == "2020" and parse_value("en") == "en" and parse_value("[1]") == "[1]"
    assert parse_filters(("year>=2020", "lang != en"), None) == {
        "$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "en"}}]}
    assert parse_filters((), '{"a": 1}') == {"a": 1}
    assert parse_filters((), None) is None


def test_shards_are_searched_as_one_corpus(index_dir: str, tmp_path: Path, tiny_llama: Path) -> None:
    parts = [tmp_path / "even", tmp_path / "odd"]
    for part, docs in zip(parts, (DOCS[::2], DOCS[1::2])):
        with Indexer(part, model=str(tiny_llama)) as indexer:
            indexer.add_documents(docs)
    code, whole = run(index_dir, "claims need proof", "-k", "5", "--json")
    assert code == 0, whole
    code, sharded = run(str(parts[0]), "claims need proof", "-k", "5", "--json", "--shard", str(parts[1]))
    assert code == 0, sharded
    assert [json.loads(line)["doc_id"] for line in sharded.splitlines()] == \
        [json.loads(line)["doc_id"] for line in whole.splitlines()]
    code, out = run(str(parts[0]), "proof", "--shard", str(parts[1]), "--hybrid")
    assert code != 0 and "--shard" in out
