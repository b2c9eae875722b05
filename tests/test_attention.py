"""Bidirectional attention is real: a later token changes the state of an earlier one."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import AutoConfig

from indexer.llm2vec import LLM2VecEncoder, UnsupportedArchitectureError, set_bidirectional
from tiny_models import ARCHITECTURES

IMPLEMENTATIONS = ["eager", "sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])


def _load(path, impl: str, bidirectional: bool) -> LLM2VecEncoder:
    try:
        return LLM2VecEncoder.from_pretrained(path, attn_implementation=impl, bidirectional=bidirectional)
    except Exception as exc:  # transformers refuses some (arch, implementation) pairs, e.g. Gemma2 + SDPA
        if "does not support" in str(exc):
            pytest.skip(f"transformers has no {impl} attention for this architecture")
        raise


def _first_token_states(encoder: LLM2VecEncoder, batch: list[list[int]]) -> torch.Tensor:
    """Hidden state of the first real token of each (left-padded) row."""
    width = max(map(len, batch))
    ids = torch.full((len(batch), width), encoder.pad_token_id)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    with torch.no_grad():
        hidden = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    return torch.stack([hidden[row, width - len(seq)] for row, seq in enumerate(batch)])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_later_token_changes_earlier_state(tiny_model_factory, arch, impl, batch_size):
    path = tiny_model_factory(arch)
    base = [0, 11, 12, 13, 14, 15]
    changed = base[:-1] + [99]
    # rows of other lengths force left padding when batch_size > 1
    filler = [[0, 21, 22], [0, 31, 32, 33, 34, 35, 36, 37]][: batch_size - 1]
    for bidirectional in (True, False):
        encoder = _load(path, impl, bidirectional)
        assert encoder.model.config._attn_implementation == impl
        original = _first_token_states(encoder, [base] + filler)[0]
        edited = _first_token_states(encoder, [changed] + filler)[0]
        difference = (original - edited).abs().max().item()
        if bidirectional:
            assert difference > 1e-3, "bidirectional: the first token must see the last one"
        else:
            assert difference < 1e-5, "causal: the first token must not see later ones"


def test_padding_does_not_change_bidirectional_states(tiny_model_factory):
    encoder = LLM2VecEncoder.from_pretrained(tiny_model_factory("qwen2", adds_bos=False))
    seq = [5, 6, 7, 8]
    alone = _first_token_states(encoder, [seq])
    padded = _first_token_states(encoder, [seq, list(range(5, 20))])[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


def test_unsupported_architecture_names_supported_ones():
    from transformers import AutoModel

    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=50)
    model = AutoModel.from_config(config)
    with pytest.raises(UnsupportedArchitectureError, match="llama.*mistral.*qwen2"):
        set_bidirectional(model, True)


def test_switching_back_to_causal(tiny_llama):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama)
    assert encoder.bidirectional
    set_bidirectional(encoder.model, False)
    assert not encoder.bidirectional
    flags = [m.is_causal for m in encoder.model.modules() if hasattr(m, "is_causal")]
    assert flags and all(flags)
