"""`l2v embed` writes the same vectors as the Python API, in input order."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from retriever.cli import main


def test_embed_writes_vectors_in_input_order(tiny_llama, tiny_encoder, tmp_path):
    rows = [{"instruction": "Retrieve code", "text": "def f(): pass"}, {"text": "plain text"}, {"text": "ünïcode"}]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(main, ["embed", "--model", str(tiny_llama), "--input", str(source),
                                       "--output", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (3, tiny_encoder.dim)
    expected = tiny_encoder.encode([r["text"] for r in rows], [r.get("instruction") for r in rows])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_embed_reports_bad_lines_without_traceback(tiny_llama, tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n{"txt": "no text field"}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["embed", "--model", str(tiny_llama), "--input", str(source),
                                       "--output", str(tmp_path / "o.npy")])
    assert result.exit_code != 0
    assert "bad.jsonl:2" in result.output and "Traceback" not in result.output
    source.write_text('{"text": "  "}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["embed", "--model", str(tiny_llama), "--input", str(source),
                                       "--output", str(tmp_path / "o.npy")])
    assert result.exit_code != 0 and "text 0 is empty" in result.output


def test_embed_unknown_model_is_a_clean_error(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "x"}\n')
    result = CliRunner().invoke(main, ["embed", "--model", "./no/such/model", "--input", str(source),
                                       "--output", str(tmp_path / "o.npy")])
    assert result.exit_code != 0 and "model not found" in result.output
