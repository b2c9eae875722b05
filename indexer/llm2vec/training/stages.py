"""The model and loss of each stage: MNTP on a causal-LM head, SimCSE and supervised on the encoder."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..adapters import apply_adapters, peft_without_deprecation_noise
from ..attention import set_bidirectional
from ..encoder import LLM2VecEncoder
from ..sources import resolve_model
from ..tokenization import adds_bos, collate
from .config import TrainConfig
from .data import read_pairs, read_texts
from .objectives import contrastive_loss, mask_tokens, mntp_loss


@dataclass
class Stage:
    """What the training loop needs from a stage."""

    model: PeftModel
    """The LoRA-wrapped model whose adapter is trained and saved."""
    size: int
    """Number of examples (blocks, texts or pairs) in one epoch."""
    loss: Callable[[list[int], int], tuple[torch.Tensor, int]]
    """(example indices, step) -> (loss, tokens processed)."""
    groups: list[list[int]] | None = None
    """Example indices per source when every batch must come from one source, else None."""


def _lora(model: torch.nn.Module, config: TrainConfig, seed: int) -> PeftModel:
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.lora_targets if t in present]
    torch.manual_seed(seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, bias="none")
    with peft_without_deprecation_noise():
        return get_peft_model(model, lora)


def mntp_stage(config: TrainConfig) -> Stage:
    resolved = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    causal = AutoModelForCausalLM.from_pretrained(resolved.location, dtype=torch.float32)
    set_bidirectional(causal, True)
    below = [*resolved.adapters, *config.adapters]
    base = apply_adapters(causal.model, below) if below else causal.model
    causal.model = base
    for parameter in causal.parameters():
        parameter.requires_grad_(False)
    model = _lora(base, config, config.seed)
    mask_id = tokenizer.mask_token_id
    if mask_id is None:  # decoder tokenizers have no mask token: the paper uses "_"
        mask_id = tokenizer.convert_tokens_to_ids("_")
        if mask_id is None or mask_id == tokenizer.unk_token_id:
            mask_id = tokenizer("_", add_special_tokens=False)["input_ids"][0]
    ratio = config.mask_ratio or (0.8 if causal.config.model_type == "mistral" else 0.2)
    blocks = pack_blocks(read_texts(config.data), tokenizer, config)
    special_ids = set(tokenizer.all_special_ids)
    device = next(causal.parameters()).device

    def loss(indices: list[int], step: int) -> tuple[torch.Tensor, int]:
        input_ids = blocks[indices]
        attention_mask = torch.ones_like(input_ids)
        generator = torch.Generator().manual_seed(config.seed * 7919 + step)
        masked, labels = mask_tokens(input_ids, attention_mask, mask_token_id=mask_id, ratio=ratio,
                                     vocab_size=causal.config.vocab_size, special_ids=special_ids, generator=generator)
        hidden = model(input_ids=masked.to(device), attention_mask=attention_mask.to(device)).last_hidden_state
        return mntp_loss(hidden, labels.to(device), causal.lm_head), int(input_ids.numel())

    return Stage(model, len(blocks), loss)


def pack_blocks(texts: list[str], tokenizer, config: TrainConfig) -> torch.Tensor:
    """Shuffle texts, join them with EOS and cut the stream into `max_length` blocks, enough for
    the run (`max_steps x batch_size x grad_accum`) or the whole corpus, whichever is smaller.

    Each block starts with the BOS when the tokenizer puts one before every text (Gemma, Llama; not
    SmolLM2), as every input the encoder sees does: models trained with a BOS at position 0
    (Gemma) lean on it as an attention sink."""
    lead = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    width = config.max_length - len(lead)
    needed = config.max_steps * config.batch_size * config.grad_accum * width
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)
    stream: list[int] = []
    for start in range(0, len(order), 512):
        chunk = [texts[i] for i in order[start : start + 512]]
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            stream.extend(ids + [tokenizer.eos_token_id])
        if len(stream) >= needed:
            break
    usable = len(stream) // width * width
    if usable == 0:
        raise ValueError(f"{config.data}: not enough text for one block of {config.max_length} tokens")
    body = torch.tensor(stream[:usable], dtype=torch.long).view(-1, width)
    return torch.cat([torch.tensor(lead, dtype=torch.long).expand(len(body), -1), body], dim=1)


def _encoder_stage(config: TrainConfig) -> tuple[LLM2VecEncoder, PeftModel]:
    encoder = LLM2VecEncoder.from_pretrained(config.model, config.adapters, pooling=config.pooling,
                                             max_length=config.max_length, doc_max_length=config.max_length)
    model = _lora(encoder.model, config, config.seed)
    encoder.model = model
    return encoder, model


def simcse_stage(config: TrainConfig) -> Stage:
    encoder, model = _encoder_stage(config)
    for module in model.modules():  # the dropout noise that makes two views of one sentence differ
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = config.simcse_dropout
    texts = read_texts(config.data)
    scale = config.scale or 20.0

    def loss(indices: list[int], step: int) -> tuple[torch.Tensor, int]:
        features = collate(encoder.tokenize([texts[i] for i in indices]), encoder.pad_token_id)
        first, second = encoder.embed(features), encoder.embed(features)  # same text, two dropout masks
        return contrastive_loss(first, second, scale), 2 * int(features["attention_mask"].sum())

    return Stage(model, len(texts), loss)


def supervised_stage(config: TrainConfig) -> Stage:
    encoder, model = _encoder_stage(config)
    pairs = read_pairs(config.data, config.instruction)
    scale = config.scale or 50.0

    def loss(indices: list[int], step: int) -> tuple[torch.Tensor, int]:
        batch = [pairs[i] for i in indices]
        queries = collate(encoder.tokenize([p.query for p in batch], [p.instruction for p in batch]),
                          encoder.pad_token_id)
        documents = [p.positive for p in batch] + [p.negative for p in batch if p.negative]
        docs = collate(encoder.tokenize(documents), encoder.pad_token_id)
        tokens = int(queries["attention_mask"].sum() + docs["attention_mask"].sum())
        return contrastive_loss(encoder.embed(queries), encoder.embed(docs), scale), tokens

    groups = None
    if config.batch_by_source:
        by_source: dict[str, list[int]] = {}
        for index, pair in enumerate(pairs):
            by_source.setdefault(pair.source, []).append(index)
        groups = list(by_source.values())
    return Stage(model, len(pairs), loss, groups)


def distill_stage(config: TrainConfig) -> Stage:
    from .distill import distill_stage as build  # distill.py builds on this module

    return build(config)


STAGE_BUILDERS = {"mntp": mntp_stage, "simcse": simcse_stage, "supervised": supervised_stage,
                  "distill": distill_stage}
