"""Start-up stays light: `l2v --help`, every command's help and `l2v index stats` never import the
model libraries (torch, transformers) nor pandas (which sqlite-utils would import), nor does
`l2v index delete`, nor `l2v search` once `l2v index build` has exported the query runtime; and
the lazy package exports all resolve."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retriever.cli import COMMANDS

HEAVY = ("torch", "transformers", "peft", "pandas")

# Runs a CLI invocation in a fresh interpreter and reports which heavy modules it imported.
_PROBE = """
import json, sys
from click.testing import CliRunner
from retriever.cli import main
result = CliRunner().invoke(main, json.loads(sys.argv[1]))
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "loaded": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
"""


def _run_cli(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_no_model_library():
    report = _run_cli(["--help"])
    assert report["exit_code"] == 0, report["output"]
    for name in COMMANDS:
        assert f"  {name} " in report["output"], f"{name} missing from l2v --help"
    assert report["loaded"] == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_no_model_library(command):
    report = _run_cli([command, "--help"])
    assert report["exit_code"] == 0, report["output"]
    assert "Usage:" in report["output"]
    assert report["loaded"] == []


def test_index_stats_imports_no_model_library(tiny_encoder, tmp_path):
    from indexer import Indexer

    with Indexer(tmp_path / "idx", tiny_encoder) as indexer:
        indexer.add_documents([{"id": "a", "text": "The quick brown fox jumps over the lazy dog."},
                               {"id": "b", "text": "Scientific claims are supported or refuted."}])
    report = _run_cli(["index", "stats", str(tmp_path / "idx"), "--json"])
    assert report["exit_code"] == 0, report["output"]
    assert json.loads(report["output"])["documents"] == 2
    assert report["loaded"] == []
    report = _run_cli(["index", "delete", str(tmp_path / "idx"), "--id", "a"])
    assert report["exit_code"] == 0, report["output"]
    assert "deleted 1 documents" in report["output"]
    assert report["loaded"] == []


def test_search_after_build_imports_no_model_library(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_CACHE_DIR", str(tmp_path / "cache"))  # the subprocesses inherit it
    source = tmp_path / "docs.jsonl"
    source.write_text('{"id": "a", "text": "The quick brown fox jumps over the lazy dog."}\n'
                      '{"id": "b", "text": "Scientific claims are supported or refuted."}\n')
    report = _run_cli(["index", "build", str(tmp_path / "idx"), str(source), "-m", str(tiny_llama)])
    assert report["exit_code"] == 0, report["output"]
    report = _run_cli(["search", str(tmp_path / "idx"), "a fox", "--json", "-k", "1"])
    assert report["exit_code"] == 0, report["output"]
    assert json.loads(report["output"].splitlines()[-1])["doc_id"] in ("a", "b")
    assert report["loaded"] == []


def test_cli_threads_wait_passively_unless_told_otherwise():
    probe = ("import os, sys; from click.testing import CliRunner; from retriever.cli import main; "
             "CliRunner().invoke(main, ['--help']); print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = [sys.executable, "-c", probe]
    assert subprocess.run(run, env=env, capture_output=True, text=True).stdout.split() == ["PASSIVE"]
    told = subprocess.run(run, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True)
    assert told.stdout.split() == ["ACTIVE"]


def test_unknown_command_is_a_usage_error():
    report = _run_cli(["serach", "idx", "query"])
    assert report["exit_code"] == 2
    assert "No such command 'serach'" in report["output"]


@pytest.mark.parametrize("package", ["indexer", "indexer.llm2vec", "indexer.llm2vec.training", "retriever"])
def test_lazy_exports_resolve(package):
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        getattr(module, "no_such_name")
