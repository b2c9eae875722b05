"""Token-budget batching: texts of similar length together, bounded padding and tokens per batch,
the same vectors whatever the batching."""

from __future__ import annotations

import random

import numpy as np
import pytest

from indexer.llm2vec import InputError
from indexer.llm2vec.batching import MAX_PADDING, length_batches
from indexer.llm2vec.text_encoder import CPU_MAX_BATCH_TOKENS

TEXTS = ["short", "a little longer text here", "Héllo wörld — ünïcode façade, 東京",
         "The quick brown fox jumps over the lazy dog. " * 6, "def encode(texts): return model(texts)",
         "Scientific claims are supported or refuted by abstracts. " * 3, "ok"]


def _padding_share(lengths, batch):
    padded = len(batch) * max(lengths[i] for i in batch)
    return (padded - sum(lengths[i] for i in batch)) / padded


@pytest.mark.parametrize("max_texts, max_tokens", [(32, 16384), (None, 16384), (4, 100), (None, 50), (1, 10)])
def test_batches_cover_every_input_once_within_their_limits(max_texts, max_tokens):
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(3, 20), rng.randint(150, 250), rng.randint(400, 512)]) for _ in range(300)]
    batches = length_batches(lengths, max_texts=max_texts, max_tokens=max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= max_tokens
            assert _padding_share(lengths, batch) <= MAX_PADDING
        assert max_texts is None or len(batch) <= max_texts
    # longest first: each batch's texts are no shorter than the next batch's
    firsts = [max(lengths[i] for i in b) for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_short_texts_share_big_batches_and_long_ones_small_batches():
    lengths = [10] * 100 + [500] * 10
    batches = length_batches(lengths, max_texts=None, max_tokens=2000)
    assert [len(b) for b in batches] == [4, 4, 2, 100]


def test_a_short_text_is_not_padded_to_a_long_one():
    assert length_batches([400, 20, 18], max_texts=32, max_tokens=16384) == [[0], [1, 2]]


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_texts"):
        length_batches([1], max_texts=0, max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens"):
        length_batches([1], max_texts=None, max_tokens=0)


def test_vectors_do_not_depend_on_the_batching(tiny_encoder):
    reference = np.stack([tiny_encoder.encode(t) for t in TEXTS])
    for batch_size, max_batch_tokens in [(32, 16384), (None, 16384), (None, 40), (2, 16384)]:
        got = tiny_encoder.encode(TEXTS, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        np.testing.assert_allclose(got, reference, atol=1e-5, rtol=1e-4)


def _record_masks(encoder, monkeypatch) -> list[np.ndarray]:
    """The attention mask of every batch `encoder` runs through its model, from now on."""
    masks = []
    real_embed = type(encoder).embed

    def spy(self, features):
        masks.append(features["attention_mask"])
        return real_embed(self, features)

    monkeypatch.setattr(type(encoder), "embed", spy)
    return masks


def test_encode_runs_the_model_on_batches_with_little_padding(tiny_encoder, monkeypatch):
    masks = _record_masks(tiny_encoder, monkeypatch)
    tiny_encoder.encode(TEXTS, batch_size=None, max_batch_tokens=16384)
    shapes = [(mask.size, int(mask.sum())) for mask in masks]
    assert sum(real for _, real in shapes) == sum(len(i.input_ids) for i in tiny_encoder.tokenize(TEXTS))
    assert all(padded - real <= MAX_PADDING * padded for padded, real in shapes if padded > real)
    assert len(shapes) < len(TEXTS)  # similar lengths still share a batch


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size"), ({"max_batch_tokens": 0}, "max_batch_tokens"),
                                             ({"max_batch_tokens": 2.5}, "max_batch_tokens")])
def test_bad_batch_settings_are_input_errors(tiny_encoder, kwargs, message):
    with pytest.raises(InputError, match=message):
        tiny_encoder.encode(TEXTS, **kwargs)


def test_a_cpu_encoder_caps_its_batches_at_the_cpu_token_budget(tiny_encoder, monkeypatch):
    """Large CPU batches map and page-fault fresh activations on every layer (1.6x slower at 16384)."""
    masks = _record_masks(tiny_encoder, monkeypatch)
    texts = [f"passage {i}: " + "retrieval augmented generation with bidirectional encoders " * 12 for i in range(48)]
    longest = max(len(item.input_ids) for item in tiny_encoder.tokenize(texts))
    assert 48 * longest > CPU_MAX_BATCH_TOKENS, "the texts must not fit one CPU batch"
    assert tiny_encoder.max_batch_tokens == CPU_MAX_BATCH_TOKENS
    tiny_encoder.encode(texts, batch_size=None)
    assert len(masks) > 1 and max(mask.size for mask in masks) <= CPU_MAX_BATCH_TOKENS
