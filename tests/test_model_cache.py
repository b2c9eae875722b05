"""The merged-model cache: a warm load skips peft and gives the same encoder; a damaged, foreign or
outdated entry is rebuilt, never trusted; file hashes are remembered by identity, not re-read."""

from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np
import pytest

from indexer.llm2vec import LLM2VecEncoder, sources
from indexer.llm2vec import encoder as encoder_module
from indexer.llm2vec.model_cache import ENTRY_FILE, MergedModel, merged_root
from test_adapters import make_adapter

TEXTS = ["merged once, loaded fast", "Héllo wörld — ünïcode façade, 東京"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def stack(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-adapters")
    return [make_adapter(tiny_llama, root / "mntp", seed=3), make_adapter(tiny_llama, root / "sup", seed=4)]


def _entries() -> list:
    return sorted(p.parent for p in merged_root().glob(f"*/{ENTRY_FILE}"))


def _no_merging(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a warm load must not merge adapters")

    monkeypatch.setattr(encoder_module, "apply_adapters", refuse)


def test_warm_load_reads_the_merged_model_and_gives_the_same_encoder(cache, tiny_llama, stack, monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cold = LLM2VecEncoder.from_pretrained(tiny_llama, stack)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    [entry] = _entries()
    assert {"model.safetensors", "config.json", "tokenizer.json", ENTRY_FILE} <= {p.name for p in entry.iterdir()}
    _no_merging(monkeypatch)
    warm = LLM2VecEncoder.from_pretrained(tiny_llama, stack)
    assert warm.fingerprint() == cold.fingerprint() and warm.spec() == cold.spec()
    np.testing.assert_array_equal(warm.encode(TEXTS), cold.encode(TEXTS))
    # settings and dtype do not need another entry; only the weights are cached
    LLM2VecEncoder.from_pretrained(tiny_llama, stack, pooling="last_token", bidirectional=False)
    assert _entries() == [entry]


def test_a_model_without_adapters_is_not_copied(cache, tiny_llama):
    LLM2VecEncoder.from_pretrained(tiny_llama)
    assert _entries() == []


@pytest.mark.parametrize("damage", ["truncated", "garbled", "other_version", "no_record"])
def test_a_damaged_or_foreign_entry_is_rebuilt(cache, tiny_llama, stack, damage, caplog):
    expected = LLM2VecEncoder.from_pretrained(tiny_llama, stack).encode(TEXTS)
    [entry] = _entries()
    weights, record = entry / "model.safetensors", entry / ENTRY_FILE
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "garbled":  # same size, so only loading it can tell
        weights.write_bytes(b"\x00" * weights.stat().st_size)
    elif damage == "other_version":
        record.write_text(json.dumps({**json.loads(record.read_text()), "format": 0}))
    else:
        record.unlink()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rebuilt = LLM2VecEncoder.from_pretrained(tiny_llama, stack)
    np.testing.assert_array_equal(rebuilt.encode(TEXTS), expected)
    assert MergedModel.of(tiny_llama, stack, "float32").verified()


def test_changed_adapter_gets_a_new_entry_and_the_old_one_goes(cache, tiny_llama, stack, tmp_path):
    adapters = [make_adapter(tiny_llama, tmp_path / "a", seed=5), stack[1]]
    first = LLM2VecEncoder.from_pretrained(tiny_llama, adapters)
    [old] = _entries()
    make_adapter(tiny_llama, tmp_path / "a", seed=6)  # retrained in place: same path, new weights
    second = LLM2VecEncoder.from_pretrained(tiny_llama, adapters)
    [new] = _entries()
    assert new != old
    assert second.fingerprint() != first.fingerprint()
    assert not np.allclose(second.encode(TEXTS), first.encode(TEXTS), atol=1e-4)


def test_unmerged_last_adapter_uses_the_entry_of_the_others(cache, tiny_llama, stack):
    merged = LLM2VecEncoder.from_pretrained(tiny_llama, stack).encode(TEXTS)
    unmerged = LLM2VecEncoder.from_pretrained(tiny_llama, stack, merge_adapters=False)
    assert type(unmerged.model).__name__ == "PeftModel"
    np.testing.assert_allclose(unmerged.encode(TEXTS), merged, atol=1e-4, rtol=1e-3)
    assert MergedModel.of(tiny_llama, stack[:1], "float32").verified()


def test_file_hashes_are_remembered_until_the_file_changes(cache, tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 1000)
    reads = []
    real = sources.file_sha256
    monkeypatch.setattr(sources, "file_sha256", lambda p: reads.append(p) or real(p))
    first = sources.cached_file_sha256(path)
    assert sources.cached_file_sha256(path) == first and len(reads) == 1
    path.write_bytes(b"y" * 1000)
    os.utime(path, ns=(1, 1))  # even a changed file that kept its size is noticed by mtime
    assert sources.cached_file_sha256(path) == real(path) != first and len(reads) == 2
