"""Adapters stack like the released checkpoints; settings and weights round-trip on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

from indexer.llm2vec import CONFIG_NAME, LLM2VecConfig, LLM2VecEncoder, ModelLoadError

TEXTS = ["adapters change the embeddings", "stacked like released checkpoints"]


def make_adapter(base_dir, out_dir, seed: int, **llm2vec_settings):
    """A random LoRA adapter (what MNTP or SimCSE training would write) for `base_dir`."""
    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir)
    if llm2vec_settings:
        LLM2VecConfig(**llm2vec_settings).write(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    first = make_adapter(tiny_llama, root / "mntp", seed=1)
    second = make_adapter(tiny_llama, root / "simcse", seed=2, pooling_mode="weighted_mean", max_length=64)
    return first, second


def test_adapters_change_embeddings_and_stack(tiny_llama, adapters):
    base = LLM2VecEncoder.from_pretrained(tiny_llama).encode(TEXTS)
    one = LLM2VecEncoder.from_pretrained(tiny_llama, [adapters[0]], pooling="weighted_mean").encode(TEXTS)
    two = LLM2VecEncoder.from_pretrained(tiny_llama, adapters)
    assert not np.allclose(base, one, atol=1e-3)
    assert not np.allclose(one, two.encode(TEXTS), atol=1e-3)
    # the last adapter's llm2vec_config.json sets the encoder's settings
    assert two.config.pooling_mode == "weighted_mean" and two.config.max_length == 64
    assert [a["sha256"] for a in two.spec()["adapters"]] and len(two.spec()["adapters"]) == 2


def test_unmerged_last_adapter_gives_the_same_vectors(tiny_llama, adapters):
    merged = LLM2VecEncoder.from_pretrained(tiny_llama, adapters).encode(TEXTS)
    unmerged = LLM2VecEncoder.from_pretrained(tiny_llama, adapters, merge_adapters=False).encode(TEXTS)
    np.testing.assert_allclose(merged, unmerged, atol=1e-4, rtol=1e-3)


def test_explicit_settings_override_the_adapter_config(tiny_llama, adapters):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, adapters, pooling="mean")
    assert encoder.config.pooling_mode == "mean" and encoder.config.max_length == 64


def test_adapter_for_another_base_model_is_refused(adapters, tmp_path):
    from tiny_models import build_model_dir

    other = build_model_dir(tmp_path / "wider", "llama", hidden_size=48)
    with pytest.raises(ModelLoadError, match="does not fit this model"):
        LLM2VecEncoder.from_pretrained(other, [adapters[0]])


def test_missing_adapter_directory(tiny_llama, tmp_path):
    with pytest.raises(ModelLoadError, match="adapter not found"):
        LLM2VecEncoder.from_pretrained(tiny_llama, [tmp_path])


def test_released_layout_model_dir_is_an_adapter(tiny_llama, adapters, tmp_path):
    """A "-mntp" directory holds an adapter naming its base model; it loads as base + adapter."""
    import shutil

    mntp = tmp_path / "mntp-release"
    shutil.copytree(adapters[0], mntp)
    config = json.loads((mntp / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_llama)
    (mntp / "adapter_config.json").write_text(json.dumps(config))
    direct = LLM2VecEncoder.from_pretrained(tiny_llama, [adapters[0]]).encode(TEXTS)
    released = LLM2VecEncoder.from_pretrained(mntp).encode(TEXTS)
    np.testing.assert_allclose(direct, released, atol=1e-5)


def test_save_pretrained_round_trip(tiny_llama, adapters, tmp_path):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, adapters, pooling="last_token", max_length=48)
    saved = encoder.save_pretrained(tmp_path / "saved")
    stored = json.loads((saved / CONFIG_NAME).read_text())
    assert stored == {"pooling_mode": "last_token", "max_length": 48, "doc_max_length": 400, "skip_instruction": True}
    reloaded = LLM2VecEncoder.from_pretrained(saved)
    assert reloaded.config == encoder.config
    np.testing.assert_allclose(reloaded.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    causal = LLM2VecEncoder.from_pretrained(saved, bidirectional=False)
    assert not causal.bidirectional
