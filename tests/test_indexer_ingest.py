"""`indexer.ingest`: reading documents from files, and skipping bad ones with a reason."""

from __future__ import annotations

import json

import pytest

from indexer.errors import SourceError
from indexer.ingest import IngestReport, RecordFields, count_documents, iter_documents


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` (test fixture; the reader under test is pypdf)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def read(sources, fields=None) -> tuple[list[dict], IngestReport]:
    report = IngestReport()
    return list(iter_documents(sources, fields, report)), report


def test_directory_of_every_format(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "sub" / "b.md").write_text("# Title here\n\nbody")
    (tmp_path / "c.html").write_text("<html><head><title>T</title><style>x{}</style></head>"
                                     "<body><p>Hello</p><script>evil()</script><p>world</p></body></html>")
    (tmp_path / "d.pdf").write_bytes(minimal_pdf("Hello from a PDF"))
    (tmp_path / "e.csv").write_text("id,title,text,year\nr1,Row one,first row,2020\nr2,,second row,2021\n")
    (tmp_path / "f.jsonl").write_text(json.dumps({"_id": "j1", "title": "J", "text": "json text",
                                                  "metadata": {"url": "u"}}) + "\n")
    (tmp_path / ".hidden.txt").write_text("ignored")
    (tmp_path / "notes.docx").write_bytes(b"ignored too")
    docs, report = read([tmp_path])
    by_id = {d["id"]: d for d in docs}
    assert sorted(by_id) == ["a.txt", "c.html", "d.pdf", "j1", "r1", "r2", "sub/b.md"]
    assert by_id["sub/b.md"]["metadata"]["title"] == "Title here"
    assert by_id["c.html"]["text"] == "T\nHello\nworld" and by_id["c.html"]["metadata"]["title"] == "T"
    assert "Hello from a PDF" in by_id["d.pdf"]["text"] and by_id["d.pdf"]["metadata"]["pages"] == 1
    assert by_id["r1"]["text"] == "Row one\n\nfirst row" and by_id["r1"]["metadata"] == {"title": "Row one", "year": 2020}
    assert by_id["r2"]["text"] == "second row"
    assert by_id["j1"]["text"] == "J\n\njson text" and by_id["j1"]["metadata"] == {"title": "J", "url": "u"}
    assert report.skipped == [] and report.files == 6 and report.documents == 7
    assert count_documents([tmp_path]) == 7


def test_bad_files_are_skipped_with_reasons(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage that is not a pdf")
    (tmp_path / "blank.md").write_text("   \n\n")
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "rows.jsonl").write_bytes(b'{"id": "1", "text": "ok"}\n{broken\n[1, 2]\n{"id": "3"}\n'
                                          b'{"id": "4", "text": "caf\xe9"}\n{"id": "5", "text": "also ok"}\n')
    docs, report = read([tmp_path])
    assert [d["id"] for d in docs] == ["good.txt", "1", "5"]
    reasons = dict(report.skipped)
    assert reasons[str(tmp_path / "empty.txt")] == "empty file"
    assert "not valid UTF-8" in reasons[str(tmp_path / "latin1.txt")]
    assert "not a readable PDF" in reasons[str(tmp_path / "broken.pdf")]
    assert reasons[str(tmp_path / "blank.md")] == "no text in it"
    assert "not valid JSON" in reasons[f"{tmp_path / 'rows.jsonl'}:2"]
    assert "expected a JSON object" in reasons[f"{tmp_path / 'rows.jsonl'}:3"]
    assert "no text" in reasons[f"{tmp_path / 'rows.jsonl'}:4"]
    assert "not valid UTF-8" in reasons[f"{tmp_path / 'rows.jsonl'}:5"]


def test_configurable_record_fields(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text(json.dumps({"qid": 7, "question": "Why?", "answer": "Because.", "lang": "en", "x": 1}) + "\n")
    fields = RecordFields(id_fields=("qid",), text_fields=("question", "answer"), metadata_fields=("lang",))
    docs, _ = read([path], fields)
    assert docs == [{"id": "7", "text": "Why?\n\nBecause.", "metadata": {"lang": "en"}, "source": f"{path}:1"}]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read([tmp_path / "nope.txt"])


def test_beir_corpus_works_as_is(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "4983", "title": "Microstructural development of human brain",
                                  "text": "Alterations of the architecture of cerebral white matter..."}) + "\n")
    report = IngestReport()
    first = next(iter_documents([corpus], None, report))
    row = json.loads(corpus.open().readline())
    assert first["id"] == row["_id"] and first["text"] == f"{row['title']}\n\n{row['text']}"
