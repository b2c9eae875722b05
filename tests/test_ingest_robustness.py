"""Ingest edge cases: typed CSV cells, text fields kept out of metadata, oversized or NUL-laden CSVs,
PDFs that make pypdf raise, HTML in legacy charsets, long text without spaces, and typed CSV filters
end to end through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.ingest import IngestReport, RecordFields, iter_documents
from retriever.cli import main
from test_indexer_ingest import minimal_pdf


def read(sources, fields=None) -> tuple[list[dict], IngestReport]:
    report = IngestReport()
    return list(iter_documents(sources, fields, report)), report


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


CELLS = {  # cell as written -> metadata value with csv_types on
    "2021": 2021, "0": 0, "-17": -17, "3.25": 3.25, "-0.5": -0.5, "1.5e3": 1500.0,
    "true": True, "FALSE": False, "True": True, "": None,
    "007": "007", "-0": "-0", "+5": "+5", "1e5": "1e5", "1.": "1.", ".5": ".5", "nan": "nan", "inf": "inf",
    "1.0e999": "1.0e999", " 42": " 42", "42 ": "42 ", "yes": "yes", "1,000": "1,000", "٣": "٣",
    "99999999999999999999": "99999999999999999999",  # beyond 64-bit: SQLite could not keep it exact
}


def test_csv_cells_are_typed(tmp_path):
    names = [f"c{i}" for i in range(len(CELLS))]
    path = write_csv(tmp_path / "t.csv", [["id", "text", *names], ["r1", "row one", *CELLS]])
    (doc,), report = read([path])
    assert report.skipped == []
    got = {cell: doc["metadata"][name] for cell, name in zip(CELLS, names)}
    assert got == CELLS
    assert {cell: type(value) for cell, value in got.items()} == {cell: type(value) for cell, value in CELLS.items()}


def test_csv_strings_keeps_every_cell_a_string(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["id", "text", "year", "flag", "blank"], ["r1", "row", "2021", "true", ""]])
    (doc,), _ = read([path], RecordFields(csv_types=False))
    assert doc["metadata"] == {"year": "2021", "flag": "true", "blank": ""}


def test_csv_id_and_text_columns_are_never_typed(tmp_path):
    path = write_csv(tmp_path / "t.csv", [["qid", "question", "answer", "n"], ["1.50", "true", "2021", "1.50"],
                                          ["007", "why?", "0", "7"]])
    fields = RecordFields(id_fields=("qid",), text_fields=("question", "answer"))
    docs, report = read([path], fields)
    assert report.skipped == []
    assert [(d["id"], d["text"], d["metadata"]) for d in docs] == [("1.50", "true\n\n2021", {"n": 1.5}),
                                                                 ("007", "why?\n\n0", {"n": 7})]


def test_custom_text_fields_stay_out_of_metadata(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "T", "body": "the body", "summary": "short", "lang": "en"}) + "\n")
    (doc,), _ = read([path], RecordFields(text_fields=("body", "summary")))
    assert doc["text"] == "the body\n\nshort" and doc["metadata"] == {"title": "T", "lang": "en"}
    (doc,), _ = read([path], RecordFields(text_fields=("title", "body")))
    assert doc["text"] == "T\n\nthe body" and doc["metadata"] == {"title": "T", "summary": "short", "lang": "en"}
    (doc,), _ = read([path])  # the defaults: title and text; title stays metadata as before
    assert doc["text"] == "T" and doc["metadata"] == {"title": "T", "body": "the body", "summary": "short", "lang": "en"}


def test_csv_cell_over_the_default_field_limit_is_read(tmp_path):
    big = "word " * 60_000  # 300k characters, over csv's default 131,072
    path = write_csv(tmp_path / "big.csv", [["id", "text"], ["r1", big], ["r2", "small"]])
    docs, report = read([path])
    assert report.skipped == [] and [d["id"] for d in docs] == ["r1", "r2"] and docs[0]["text"] == big


def test_csv_error_skips_the_rest_of_that_file_with_a_reason(tmp_path, monkeypatch):
    import indexer.ingest.records as records

    monkeypatch.setattr(records, "CSV_FIELD_LIMIT", 1000)
    write_csv(tmp_path / "a.csv", [["id", "text"], ["r1", "fine"], ["r2", "x" * 2000], ["r3", "after"]])
    write_csv(tmp_path / "b.csv", [["id", "text"], ["b1", "other file"]])
    docs, report = read([tmp_path])
    assert [d["id"] for d in docs] == ["r1", "b1"]
    (what, why), = report.skipped
    assert what == f"{tmp_path / 'a.csv'}:3" and "field larger than field limit" in why and "rest of the file" in why


def test_csv_with_a_nul_byte_is_skipped_with_its_name(tmp_path):
    (tmp_path / "nul.csv").write_bytes(b"id,text\nr1,fine\nr2,bro\x00ken\n")
    (tmp_path / "utf16.csv").write_bytes("id,text\nu1,hello\n".encode("utf-16-le"))  # no BOM: NULs everywhere
    write_csv(tmp_path / "ok.csv", [["id", "text"], ["k1", "kept"]])
    docs, report = read([tmp_path])
    assert [d["id"] for d in docs] == ["k1"]
    reasons = dict(report.skipped)
    assert "NUL byte" in reasons[str(tmp_path / "nul.csv")] and "line 3" in reasons[str(tmp_path / "nul.csv")]
    assert "NUL byte" in reasons[str(tmp_path / "utf16.csv")]


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), IndexError("list index"),
                                   ZeroDivisionError("division by zero"), NotImplementedError("filter"),
                                   RuntimeError("anything")])
def test_pdf_that_makes_pypdf_raise_anything_is_skipped(tmp_path, monkeypatch, error):
    import pypdf

    def explode(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(pypdf.PageObject, "extract_text", explode)
    (tmp_path / "bad.pdf").write_bytes(minimal_pdf("Hello"))
    (tmp_path / "good.txt").write_text("still read")
    docs, report = read([tmp_path])
    assert [d["id"] for d in docs] == ["good.txt"]
    (what, why), = report.skipped
    assert what == str(tmp_path / "bad.pdf") and type(error).__name__ in why and "not a readable PDF" in why


HTML_CASES = {
    "meta-charset.html": ('<html><head><meta charset="windows-1252"><title>Caf\u00e9</title></head>'
                          '<body><p>\u201cna\u00efve\u201d \u20ac5</p></body></html>', "windows-1252"),
    "http-equiv.html": ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
                        '<title>Caf\u00e9</title></head><body><p>na\u00efve</p></body></html>', "iso-8859-1"),
    "latin1-label.html": ('<html><head><meta charset="iso-8859-1"><title>Caf\u00e9</title></head>'
                          '<body><p>\u201cquoted\u201d</p></body></html>', "cp1252"),  # browsers read it as cp1252
    "sjis.html": ('<html><head><meta charset="Shift_JIS"><title>\u6771\u4eac</title></head>'
                  '<body><p>\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059</p></body></html>', "shift_jis"),
    "plain-utf8.html": ("<html><head><title>Caf\u00e9</title></head><body><p>\u6771\u4eac</p></body></html>", "utf-8"),
}


@pytest.mark.parametrize("name", sorted(HTML_CASES))
def test_html_in_a_declared_charset_is_decoded(tmp_path, name):
    markup, encoding = HTML_CASES[name]
    (tmp_path / name).write_bytes(markup.encode(encoding))
    (doc,), report = read([tmp_path / name])
    from bs4 import BeautifulSoup

    expected = BeautifulSoup(markup, "html.parser")
    assert report.skipped == [] and doc["metadata"]["title"] == expected.title.string
    assert doc["text"].splitlines() == [expected.title.string, expected.p.get_text()]


def test_html_byte_order_mark_wins_and_utf8_stays_the_default(tmp_path):
    markup = '<html><head><meta charset="windows-1252"><title>\u6771\u4eac</title></head><body>x</body></html>'
    (tmp_path / "bom8.html").write_bytes(b"\xef\xbb\xbf" + markup.encode("utf-8"))
    (tmp_path / "bom16.html").write_bytes(markup.encode("utf-16"))  # Python's utf-16 writes a BOM
    (tmp_path / "undeclared.html").write_bytes("<p>caf\u00e9</p>".encode("latin-1"))
    (tmp_path / "wrong.html").write_bytes(b'<meta charset="utf-8"><p>caf\xe9</p>')
    (tmp_path / "unknown.html").write_bytes(b'<meta charset="klingon-8"><p>hello</p>')
    docs, report = read([tmp_path])
    assert {d["id"]: d["metadata"]["title"] for d in docs} == {"bom8.html": "\u6771\u4eac", "bom16.html": "\u6771\u4eac"}
    reasons = dict(report.skipped)
    assert "not valid UTF-8" in reasons[str(tmp_path / "undeclared.html")]
    assert "not valid UTF-8" in reasons[str(tmp_path / "wrong.html")]
    assert "klingon-8" in reasons[str(tmp_path / "unknown.html")]


def test_long_japanese_text_without_spaces_is_read_whole(tmp_path):
    japanese = ("\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3042\u308a\u3001"
                "\u653f\u6cbb\u3068\u7d4c\u6e08\u306e\u4e2d\u5fc3\u3067\u3059\u3002") * 110
    assert len(japanese) >= 2500 and " " not in japanese
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"_id": "ja", "text": japanese, "lang": "ja"}, ensure_ascii=False) + "\n"
                    + json.dumps({"_id": "en", "text": "Tokyo is the capital of Japan."}) + "\n", encoding="utf-8")
    docs, report = read([path])
    assert report.skipped == [] and [d["id"] for d in docs] == ["ja", "en"]
    assert docs[0]["text"] == japanese and docs[0]["metadata"] == {"lang": "ja"}


def test_typed_csv_filters_end_to_end(tmp_path, tiny_llama):
    rows = [["id", "text", "year", "venue"], ["p2019", "dense retrieval with encoders", "2019", "ACL"],
            ["p2020", "sparse retrieval and BM25", "2020", "SIGIR"],
            ["p2021", "retrieval augmented generation", "2021", "NeurIPS"],
            ["p2023", "LLM2Vec turns decoders into retrieval encoders", "2023", "COLM"]]
    source = write_csv(tmp_path / "papers.csv", rows)
    index = str(tmp_path / "idx")
    runner = CliRunner()

    built = runner.invoke(main, ["index", "build", index, str(source), "--model", str(tiny_llama)])
    assert built.exit_code == 0, built.output
    found = runner.invoke(main, ["search", index, "retrieval", "-k", "10", "--json", "--filter", "year>=2021"])
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.stdout.strip().splitlines()]
    assert sorted(h["doc_id"] for h in hits) == ["p2021", "p2023"]
    assert {h["metadata"]["year"] for h in hits} == {2021, 2023}

    deleted = runner.invoke(main, ["index", "delete", index, "--filter", "year=2019"])
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.startswith("deleted 1 documents")
    left = runner.invoke(main, ["search", index, "retrieval", "-k", "10", "--json"])
    assert sorted(json.loads(line)["doc_id"] for line in left.stdout.strip().splitlines()) == ["p2020", "p2021", "p2023"]

    strings = str(tmp_path / "idx-strings")
    built = runner.invoke(main, ["index", "build", strings, str(source), "--model", str(tiny_llama), "--csv-strings"])
    assert built.exit_code == 0, built.output
    found = runner.invoke(main, ["search", strings, "retrieval", "-k", "10", "--json", "--filter", 'year="2019"'])
    assert [json.loads(line)["doc_id"] for line in found.stdout.strip().splitlines()] == ["p2019"]
