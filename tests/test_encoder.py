"""Encoding: pooling over text tokens only, input forms, order, truncation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.llm2vec import InputError, LLM2VecEncoder, ModelLoadError

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def encode(texts): return model(texts)",
    "Héllo wörld — ünïcode façade, 東京",
    "Scientific claims are supported or refuted.",
    "short",
]
INSTRUCTION = "Given a question, retrieve passages that answer the question"


def _hidden(encoder: LLM2VecEncoder, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return encoder.model(input_ids=torch.tensor([ids])).last_hidden_state[0]


def test_instruction_is_seen_but_not_pooled(tiny_encoder):
    [item] = tiny_encoder.tokenize([TEXTS[0]], [INSTRUCTION])
    pooled_ids = [t for t, m in zip(item.input_ids, item.pool_mask) if m]
    assert tiny_encoder.tokenizer.decode(pooled_ids).strip() == TEXTS[0]
    assert len(item.input_ids) > len(pooled_ids) + 5  # the instruction is in the input
    hidden = _hidden(tiny_encoder, item.input_ids)
    expected = hidden[torch.tensor(item.pool_mask)].mean(0)
    got = tiny_encoder.encode(TEXTS[0], INSTRUCTION, convert_to="torch")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # ... and the model does attend to it: the vector differs from the plain text's
    assert not torch.allclose(got, tiny_encoder.encode(TEXTS[0], convert_to="torch"), atol=1e-3)


def test_no_instruction_pools_every_text_token_but_bos(tiny_encoder):
    [item] = tiny_encoder.tokenize([TEXTS[1]])
    assert item.input_ids[0] == tiny_encoder.tokenizer.bos_token_id
    assert item.pool_mask == [False] + [True] * (len(item.input_ids) - 1)


@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "last_token", "eos_token", "bos_token"])
def test_pooling_modes_match_hidden_states(tiny_model_factory, mode):
    path = tiny_model_factory("qwen2", adds_bos=False)  # a tokenizer that adds no BOS
    encoder = LLM2VecEncoder.from_pretrained(path, pooling=mode)
    [item] = encoder.tokenize([TEXTS[0]], [INSTRUCTION])
    hidden = _hidden(encoder, item.input_ids)
    mask = torch.tensor(item.pool_mask)
    if mode == "mean":
        expected = hidden[mask].mean(0)
    elif mode == "weighted_mean":
        weights = torch.arange(1, int(mask.sum()) + 1, dtype=torch.float32)
        expected = (hidden[mask] * weights[:, None]).sum(0) / weights.sum()
    elif mode in ("last_token", "eos_token"):
        expected = hidden[-1]
    else:
        expected = hidden[0]
    if mode == "eos_token":
        assert item.input_ids[-1] == encoder.tokenizer.eos_token_id
    if mode == "bos_token":
        assert item.input_ids[0] == encoder.tokenizer.bos_token_id  # prepended: the tokenizer adds none
    got = encoder.encode([TEXTS[0]], INSTRUCTION, convert_to="torch")[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_rows_come_back_in_input_order_whatever_the_batching(tiny_encoder):
    one_by_one = np.stack([tiny_encoder.encode(t) for t in TEXTS])
    for batch_size in (1, 2, 32):
        batched = tiny_encoder.encode(TEXTS, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=1e-4)


def test_pairs_equal_instruction_argument(tiny_encoder):
    instructions = [INSTRUCTION, None, "  ", "Retrieve code", INSTRUCTION]
    by_argument = tiny_encoder.encode(TEXTS, instructions)
    by_pairs = tiny_encoder.encode([[i or "", t] for i, t in zip(instructions, TEXTS)])
    np.testing.assert_allclose(by_argument, by_pairs, atol=1e-6)
    # whitespace-only instruction = no instruction
    np.testing.assert_allclose(by_argument[2], tiny_encoder.encode(TEXTS[2]), atol=1e-6)


def test_output_forms_and_normalisation(tiny_encoder):
    single = tiny_encoder.encode(TEXTS[0])
    assert single.shape == (tiny_encoder.dim,) and single.dtype == np.float32
    assert isinstance(tiny_encoder.encode(TEXTS, convert_to="torch"), torch.Tensor)
    as_list = tiny_encoder.encode(TEXTS[:2], convert_to="list")
    assert isinstance(as_list, list) and len(as_list) == 2 and len(as_list[0]) == tiny_encoder.dim
    normalized = tiny_encoder.encode(TEXTS, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-5)
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)


def test_long_texts_are_cut_on_words_then_to_max_length(tiny_llama):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, max_length=40, doc_max_length=24)
    long_text = " ".join(["retrieval augmented generation"] * 50)
    [plain, instructed] = encoder.tokenize([long_text, long_text], [None, INSTRUCTION])
    assert sum(plain.pool_mask) <= 24
    assert len(instructed.input_ids) <= 40
    assert 0 < sum(instructed.pool_mask) <= 24
    # the pooled tokens are the start of the text, never the instruction
    pooled = encoder.tokenizer.decode([t for t, m in zip(instructed.input_ids, instructed.pool_mask) if m])
    assert long_text.startswith(pooled.strip())
    assert np.isfinite(encoder.encode([long_text], INSTRUCTION)).all()


@pytest.mark.parametrize(
    "texts, instruction, message",
    [
        (["ok", ""], None, "text 1 is empty"),
        (["ok", "   \n"], None, "text 1 is empty"),
        (["ok", None], None, "text 1 is NoneType"),
        ([3], None, "text 0 is int"),
        ("ok".encode(), None, "texts must be a string or a list"),
        (["a", "b"], ["one"], "got 1 instructions for 2 texts"),
        (["a"], [7], "instruction 0 is int"),
        ([["i", "a"], "b"], None, "mix of plain texts"),
        ([["i", "a", "x"]], None, "must be an \\[instruction, text\\] pair"),
        ([["i", "a"]], "also", "not both"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_encoder, texts, instruction, message):
    with pytest.raises(InputError, match=message):
        tiny_encoder.encode(texts, instruction)


def test_bad_arguments(tiny_llama, tiny_encoder, tmp_path):
    with pytest.raises(InputError, match="unknown pooling mode 'max'"):
        LLM2VecEncoder.from_pretrained(tiny_llama, pooling="max")
    with pytest.raises(ModelLoadError, match="model not found"):
        LLM2VecEncoder.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no config.json"):
        LLM2VecEncoder.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        LLM2VecEncoder.from_pretrained(tmp_path / "model.gguf")
    with pytest.raises(InputError, match="convert_to"):
        tiny_encoder.encode(["a"], convert_to="pandas")
    with pytest.raises(InputError, match="batch_size"):
        tiny_encoder.encode(["a"], batch_size=0)


def test_instruction_filling_max_length_is_an_error(tiny_llama):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, max_length=8)
    with pytest.raises(InputError, match="no token left to pool"):
        encoder.encode(["some text"], INSTRUCTION)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="could not fetch 'some-org/some-model'.*embedded model"):
        LLM2VecEncoder.from_pretrained("some-org/some-model")


def test_fingerprint_tells_different_weights_apart(tiny_model_factory, tmp_path):
    from tiny_models import build_model_dir

    same_config_other_weights = build_model_dir(tmp_path / "other", "llama", seed=7)
    first = LLM2VecEncoder.from_pretrained(tiny_model_factory("llama"))
    second = LLM2VecEncoder.from_pretrained(same_config_other_weights)
    assert first.fingerprint() != second.fingerprint()
    assert first.fingerprint() == LLM2VecEncoder.from_pretrained(tiny_model_factory("llama")).fingerprint()
    assert first.fingerprint() != LLM2VecEncoder.from_pretrained(tiny_model_factory("llama"), pooling="weighted_mean").fingerprint()


@pytest.mark.parametrize(
    "text, folded",
    [
        ("OPTICAL PROPERTIES OF SEMICONDUCTORS", "optical properties of semiconductors"),
        ("USE OF DIGITAL COMPUTERS, 1962", "use of digital computers, 1962"),
        ("What is LoRA on a GPU?", "What is LoRA on a GPU?"),  # acronyms in normal text stay
        ("NASA", "NASA"),  # a lone capitalised word may be an acronym
        ("使用 GPU 训练", "使用 GPU 训练"),  # one capitalised word among uncased script
        ("東京", "東京"),
    ],
)
def test_fold_all_caps_lower_cases_only_shouted_text(text, folded):
    from indexer.llm2vec.tokenization import fold_all_caps

    assert fold_all_caps(text) == folded


def test_all_caps_text_encodes_like_its_lower_case(tiny_llama):
    shouted, lower = "OPTICAL PROPERTIES OF SEMICONDUCTORS", "optical properties of semiconductors"
    folding = LLM2VecEncoder.from_pretrained(tiny_llama)
    vectors = folding.encode([shouted, lower], instruction="GIVEN A QUERY, RETRIEVE DOCUMENTS")
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    keeping = LLM2VecEncoder.from_pretrained(tiny_llama, fold_all_caps=False)
    kept = keeping.encode([shouted, lower])
    assert not np.allclose(kept[0], kept[1], atol=1e-3)
    assert folding.fingerprint() != keeping.fingerprint()
