"""Versioned recipe names: "smollm2-135m:mntp+supervised@2"; old indexes open or name their rebuild."""

from __future__ import annotations

import json
import shlex

import pytest

from indexer import Indexer
from indexer.llm2vec import ModelLoadError, RecipeVersionError, resolve_model
from indexer.llm2vec.recipes import (SHIPPED_VERSIONS, RecipeName, check_manifest_recipe, parse_recipe_name,
                                     rebuild_command)
from retriever import Retriever, RetrieverError


def test_names_parse_into_model_recipe_and_version():
    assert parse_recipe_name("smollm2-135m:mntp+supervised@2") == RecipeName("smollm2-135m", "mntp+supervised", 2)
    assert parse_recipe_name("smollm2-135m:mntp") == RecipeName("smollm2-135m", "mntp", None)
    assert parse_recipe_name("smollm2-135m@1") == RecipeName("smollm2-135m", "", 1)
    assert parse_recipe_name("smollm2-135m") == RecipeName("smollm2-135m", "", None)
    assert RecipeName("smollm2-135m", "", 1).canonical("mntp+supervised") == "smollm2-135m:mntp+supervised"
    assert RecipeName("smollm2-135m", "mntp", 3).canonical("mntp") == "smollm2-135m:mntp@3"
    for bad in ("smollm2-135m:mntp@0", "smollm2-135m:mntp@x", "smollm2-135m@", "smollm2-135m:mntp@1.5"):
        with pytest.raises(ModelLoadError, match="positive integer"):
            parse_recipe_name(bad)


def test_the_shipped_adapters_are_version_1_and_unversioned_names_mean_version_1():
    assert SHIPPED_VERSIONS["smollm2-135m"] == 1
    check_manifest_recipe({"encoder": {"model": "smollm2-135m:mntp+supervised"}})  # every existing index
    check_manifest_recipe({"encoder": {"model": "smollm2-135m:mntp+supervised@1"}})
    check_manifest_recipe({"encoder": {"model": "smollm2-135m:base@7"}})  # the untrained model has no versions
    check_manifest_recipe({"encoder": {"model": "/some/model/dir"}})  # not an embedded model


def test_an_unshipped_version_fails_before_any_weights_load():
    with pytest.raises(RecipeVersionError, match=r"smollm2-135m:mntp\+supervised@2 is not shipped.*ships version 1"):
        resolve_model("smollm2-135m:mntp+supervised@2")
    with pytest.raises(RecipeVersionError, match="@2 is not shipped"):
        resolve_model("smollm2-135m@2")


@pytest.fixture
def index_of_a_future_recipe(tmp_path, tiny_encoder):
    """An index built with `tiny_encoder`, its manifest then naming a recipe version this release lacks."""
    source = tmp_path / "notes.jsonl"
    source.write_text("\n".join(json.dumps({"id": f"n{i}", "text": f"note number {i} about tides"})
                                for i in range(3)) + "\n")
    index_dir = tmp_path / "notes-index"
    with Indexer(index_dir, tiny_encoder, chunk_tokens=32, overlap=4) as indexer:
        indexer.add_documents([{"id": f"n{i}", "text": f"note number {i} about tides", "source": str(source)}
                               for i in range(3)])
    manifest_path = index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["encoder"]["model"] = "smollm2-135m:mntp+supervised@2"
    manifest_path.write_text(json.dumps(manifest))
    return index_dir, source


def test_an_index_of_an_unshipped_version_names_the_exact_rebuild_command(index_of_a_future_recipe):
    index_dir, source = index_of_a_future_recipe
    with Indexer.open(index_dir) as indexer, pytest.raises(RecipeVersionError) as raised:
        indexer.encoder  # the writer loads the manifest's encoder on first use
    message = str(raised.value)
    assert f"the index {index_dir} was built with smollm2-135m:mntp+supervised@2" in message
    command = message.split("\n")[1].strip()
    assert shlex.split(command) == ["l2v", "index", "build", str(index_dir.with_name("notes-index-v1")), str(source),
                                    "--model", "smollm2-135m", "--chunk-tokens", "32", "--overlap", "4",
                                    "--factory", "Flat"]
    with pytest.raises(RetrieverError, match="Rebuild it with the shipped encoder"):
        Retriever.open(index_dir)
    with Indexer.open(index_dir) as indexer:  # what needs no encoder still works
        assert indexer.stats()["documents"] == 3


def test_rebuild_command_falls_back_to_a_placeholder_without_recorded_sources(tmp_path):
    command = rebuild_command({"factory": "HNSW32", "chunking": {}}, tmp_path / "idx", "smollm2-135m")
    assert command == f"l2v index build {tmp_path / 'idx-v1'} SOURCES... --model smollm2-135m --factory HNSW32"


@pytest.mark.integration
def test_version_1_names_the_shipped_adapters_and_manifests_keep_their_old_names():
    current, explicit = resolve_model("smollm2-135m"), resolve_model("smollm2-135m:mntp+supervised+distill2@1")
    assert current == explicit and current.source == "smollm2-135m:mntp+supervised+distill2" and len(current.adapters) == 3
    earlier = resolve_model("smollm2-135m:mntp+supervised")  # the default before 2026-12-02: its indexes still open
    assert earlier.source == "smollm2-135m:mntp+supervised" and len(earlier.adapters) == 2
    distill = resolve_model("smollm2-135m:mntp+supervised+distill")  # the default of 2026-12-02/03
    assert distill.source == "smollm2-135m:mntp+supervised+distill" and distill.adapters[:2] == current.adapters[:2]
    assert distill.adapters[2] != current.adapters[2]
    assert resolve_model("smollm2-135m:base@1").adapters == ()
