"""Tiny random models of each supported architecture, built from configs (no download)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval augmented generation needs a good text encoder.",
    "def encode(texts): return model(texts)  # some code",
    "Héllo wörld — ünïcode façade, naïve café, 東京, Москва.",
    "Scientific claims are supported or refuted by abstracts.",
    "Given a question, retrieve passages that answer the question.",
] * 20

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")

_SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
_EXTRA = {
    "mistral": dict(sliding_window=4096),
    "qwen3": dict(head_dim=8),
    "gemma": dict(head_dim=8),
    "gemma2": dict(head_dim=8, sliding_window=16, query_pre_attn_scalar=8),
    "gemma3_text": dict(head_dim=8, sliding_window=16, query_pre_attn_scalar=8,
                        layer_types=["sliding_attention", "full_attention"]),
}


def build_tokenizer(adds_bos: bool = True, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def build_model_dir(path: Path, arch: str = "llama", *, adds_bos: bool = True, seed: int = 0, **overrides) -> Path:
    """Save a tiny random `arch` causal LM with its tokenizer in `path`; returns `path`."""
    tokenizer = build_tokenizer(adds_bos=adds_bos)
    config = AutoConfig.for_model(arch, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=1,
                                  pad_token_id=1, tie_word_embeddings=True,
                                  **{**_SIZES, **_EXTRA.get(arch, {}), **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    # random init is small; larger weights make every token matter, so tests can see differences
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
