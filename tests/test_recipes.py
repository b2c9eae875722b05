"""Embedded models name their shipped LLM2Vec adapters: "smollm2-135m[:recipe]"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from indexer.llm2vec import DEFAULT_MODEL, EMBEDDED_MODELS
from indexer.llm2vec.errors import ModelLoadError
from indexer.llm2vec.sources import PRETRAINED, shipped_recipes

SMOLLM2 = EMBEDDED_MODELS["smollm2-135m"]


@pytest.mark.parametrize(("model", "distilled"), [("gemma3-270m", "distill3"), ("smollm2-135m", "distill2")])
def test_default_recipe_is_mntp_then_supervised_then_distilled(model, distilled):
    embedded = EMBEDDED_MODELS[model]
    adapters = embedded.recipe_adapters(embedded.default_recipe)
    assert [Path(a).name for a in adapters] == ["mntp", "supervised", distilled]
    for adapter in adapters:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == f"{model}:base"  # portable, not a machine path
        assert (Path(adapter) / "adapter_model.safetensors").stat().st_size < 12_000_000


def test_base_recipe_has_no_adapters_and_unknown_recipes_are_refused():
    assert SMOLLM2.recipe_adapters("base") == ()
    with pytest.raises(ModelLoadError, match="ships no adapter.*recipes: base, mntp"):
        SMOLLM2.recipe_adapters("mntp+dpo")


def test_a_stage_stacked_on_other_stages_than_it_was_trained_on_is_refused():
    """Any "+"-combination of shipped stages loaded: "mntp+distill" stacked the distilled adapter
    on MNTP alone, without the supervised stage it was trained on, and gave other vectors silently."""
    with pytest.raises(ModelLoadError, match="distill adapter was trained on top of mntp\\+supervised, not mntp: "
                                             "use smollm2-135m:mntp\\+supervised\\+distill"):
        SMOLLM2.recipe_adapters("mntp+distill")
    with pytest.raises(ModelLoadError, match="mntp adapter was trained on top of the base model alone, not supervised"):
        SMOLLM2.recipe_adapters("supervised+mntp")
    assert [Path(a).name for a in SMOLLM2.recipe_adapters("mntp+supervised+distill")] == ["mntp", "supervised", "distill"]


def test_a_stage_is_listed_on_top_of_the_stages_it_was_trained_on(tmp_path, monkeypatch):
    from indexer.llm2vec import sources

    for stage, trained_on in (("mntp", []), ("supervised", ["mntp"]), ("distill", ["mntp", "supervised"])):
        (tmp_path / "m" / stage).mkdir(parents=True)
        (tmp_path / "m" / stage / "adapter_config.json").write_text("{}")
        (tmp_path / "m" / stage / "train_config.json").write_text(
            json.dumps({"adapters": [f"/elsewhere/pretrained/m/{name}" for name in trained_on]}))
    monkeypatch.setattr(sources, "PRETRAINED", tmp_path)
    assert shipped_recipes("m") == ["base", "mntp", "mntp+supervised", "mntp+supervised+distill"]


@pytest.mark.parametrize("model", sorted(EMBEDDED_MODELS))
def test_shipped_adapters_carry_their_reproduction_record(model):
    for recipe in shipped_recipes(model)[1:]:
        for adapter in EMBEDDED_MODELS[model].recipe_adapters(recipe):
            directory = Path(adapter)
            train_config = json.loads((directory / "train_config.json").read_text())
            assert train_config["model"] == f"{model}:base" and directory.name.startswith(train_config["stage"])
            recipe_file = PRETRAINED / model / f"{directory.name}.yaml"
            written = yaml.safe_load(recipe_file.read_text())  # the recipe it was trained with, as written
            assert {key: train_config[key] for key in written} == written, recipe_file
            assert len(json.loads((directory / "train_provenance.json").read_text())["data_sha256"]) == 64
            steps = [json.loads(line)["step"] for line in (directory / "train_log.jsonl").read_text().splitlines()]
            assert steps[-1] == train_config["max_steps"]


def test_distill3_recipe_run_straight_gives_the_rates_its_shipped_branch_trained_at():
    """distill3 shipped as a branch of the epoch run (its step-530 checkpoint, then 80 cool-down
    steps); its recipe is the epoch recipe run straight with the branch's schedule. Every logged step
    of the shipped adapter, before and after the branch point, is at the rate that recipe gives."""
    from indexer.llm2vec.training.config import TrainConfig

    directory = PRETRAINED / "gemma3-270m" / "distill3"
    recipe = TrainConfig.build("distill", PRETRAINED / "gemma3-270m" / "distill3.yaml", data="-", output_dir="-")
    log = [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, recipe.max_steps + 1))
    assert [row["lr"] for row in log] == pytest.approx([recipe.learning_rate_at(row["step"] - 1) for row in log],
                                                       rel=1e-9, abs=1e-15)
    assert recipe.learning_rate_at(recipe.max_steps - recipe.cooldown_steps - 1) > 0.7 * recipe.learning_rate


def test_cli_help_names_each_embedded_models_default_recipe():
    """`l2v --help` named a default recipe two retrainings old; it must follow `DEFAULT_MODEL` and
    each model's `default_recipe`."""
    from click.testing import CliRunner

    from retriever.cli import main

    help_text = CliRunner().invoke(main, ["--help"], terminal_width=100).output
    assert f"{DEFAULT_MODEL} (the default" in " ".join(help_text.split()), "l2v --help names another default model"
    for name, embedded in EMBEDDED_MODELS.items():
        assert f"{name}:{embedded.default_recipe};" in help_text, f"l2v --help misstates {name}'s default recipe"


def test_a_shipped_recipe_names_the_chunk_length_of_new_indexes(tmp_path: Path, tiny_encoder,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import Indexer
    from indexer.llm2vec import recipes

    monkeypatch.setitem(recipes.INDEX_CHUNK_TOKENS, tiny_encoder.spec()["model"], 16)
    with Indexer(tmp_path / "recipe", tiny_encoder) as indexer:
        assert indexer.chunk_tokens == 16
    with Indexer(tmp_path / "asked", tiny_encoder, chunk_tokens=24) as indexer:
        assert indexer.chunk_tokens == 24  # an explicit length wins
    monkeypatch.delitem(recipes.INDEX_CHUNK_TOKENS, tiny_encoder.spec()["model"])
    with Indexer(tmp_path / "recipe", tiny_encoder) as indexer:
        assert indexer.chunk_tokens == 16  # an index keeps the length it was built with
    with Indexer(tmp_path / "unlisted", tiny_encoder) as indexer:
        assert indexer.chunk_tokens == tiny_encoder.config.doc_max_length
