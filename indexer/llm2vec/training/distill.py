"""Distillation from a sentence-transformers teacher: mined hard negatives and soft targets.

`l2v train distill` is the supervised stage with a teacher (`teacher:` in the recipe: a
sentence-transformers folder, "all-MiniLM-L6-v2" or "all-mpnet-base-v2"; see `teachers.py`):

1. The teacher encodes every query and every passage (positives and given negatives) once.
2. For each pair it mines `mined_negatives` hard negatives: the passages of the same source the
   teacher ranks highest that are not a positive of that query and score below `negative_margin`
   times the positive (a guard against unlabelled positives, as in NV-Retriever).
3. Each step scores every query against its batch's candidates (the positives, the given and the
   mined negatives) with the student and with the teacher, and mixes the contrastive loss with a
   KL divergence from the teacher's distribution (temperature `teacher_temperature`) to the
   student's: `(1 - distill_weight) * InfoNCE + distill_weight * KL`.

Pairs may also be made from paragraphs (`paragraphs:` a text file, one per line): the first
sentence is the query and the rest of the paragraph its positive.

The teacher's vectors and the mined negatives are computed once per run and kept in
`OUTPUT/teacher.safetensors` (+ `teacher.json`, what they were computed from), written atomically,
so a resumed run does not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..hardware import use_bf16
from ..sources import file_sha256
from ..tokenization import collate
from .config import TrainConfig
from .data import Pair, read_pairs, read_texts
from .stages import Stage, _encoder_stage
from .teachers import teacher_path

PARAGRAPH_SOURCE = "paragraph_first_sentence"
PARAGRAPH_INSTRUCTION = "Given the first sentence of a passage, retrieve the rest of the passage"
TEACHER_FILE, TEACHER_META = "teacher.safetensors", "teacher.json"
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def paragraph_pairs(texts: Sequence[str], *, min_words: int = 8) -> list[Pair]:
    """(first sentence -> rest of the paragraph) pairs; paragraphs whose first sentence or rest is
    shorter than `min_words` / 2 and `min_words` words are skipped."""
    pairs = []
    for text in texts:
        parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
        if len(parts) != 2:
            continue
        first, rest = parts[0].strip(), parts[1].strip()
        if len(first.split()) >= min_words // 2 and len(rest.split()) >= min_words:
            pairs.append(Pair(first, rest, None, PARAGRAPH_INSTRUCTION, PARAGRAPH_SOURCE))
    return pairs


@dataclass
class TeacherData:
    """The pairs, their passages (unique texts) and what the teacher made of them."""

    pairs: list[Pair]
    passages: list[str]
    positive: torch.Tensor
    """[pairs] passage index of each pair's positive."""
    negative: torch.Tensor
    """[pairs] passage index of each pair's given hard negative, -1 for none."""
    mined: torch.Tensor
    """[pairs, mined_negatives] passage indices of the mined negatives, -1 where fewer were found."""
    queries: torch.Tensor
    """[pairs, teacher dim] the teacher's normalised query vectors."""
    vectors: torch.Tensor
    """[passages, teacher dim] the teacher's normalised passage vectors."""


def read_distill_pairs(config: TrainConfig) -> list[Pair]:
    """The pairs of `config.data` plus, with `config.paragraphs`, pairs made from paragraphs."""
    pairs = read_pairs(config.data, config.instruction)
    if config.paragraphs:
        made = paragraph_pairs(read_texts(config.paragraphs))
        pairs += made[: config.paragraph_pairs] if config.paragraph_pairs is not None else made
    return pairs


def mine_negatives(queries: torch.Tensor, vectors: torch.Tensor, positive: torch.Tensor,
                   groups: Sequence[Sequence[int]], query_texts: Sequence[str], *, k: int, margin: float,
                   block: int = 1024) -> torch.Tensor:
    """[pairs, k] hard negatives per pair: the passages of its group the teacher ranks highest,
    excluding every positive of the same query text and, when the positive scores above 0, anything
    scoring >= margin x the positive."""
    mined = torch.full((len(positive), k), -1, dtype=torch.long)
    positives_of: dict[str, set[int]] = {}
    for index, text in enumerate(query_texts):
        positives_of.setdefault(text, set()).add(int(positive[index]))
    for group in groups:
        members = torch.tensor(list(group), dtype=torch.long)
        candidates = torch.unique(positive[members])
        if len(candidates) < 2:
            continue
        for start in range(0, len(members), block):
            rows = members[start : start + block]
            scores = queries[rows] @ vectors[candidates].T
            own_score = (queries[rows] * vectors[positive[rows]]).sum(-1, keepdim=True)
            limit = torch.where(own_score > 0, margin * own_score, torch.full_like(own_score, float("inf")))
            scores = scores.masked_fill(scores >= limit, float("-inf"))
            column = {int(c): j for j, c in enumerate(candidates)}
            for r, row in enumerate(rows.tolist()):
                for own in positives_of[query_texts[row]]:
                    if own in column:
                        scores[r, column[own]] = float("-inf")
            top = scores.topk(min(k, len(candidates)), dim=1)
            found = torch.where(torch.isfinite(top.values), candidates[top.indices], torch.full_like(top.indices, -1))
            mined[rows, : found.shape[1]] = found
    return mined


def teacher_device() -> torch.device:
    """Where the teacher runs: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def teacher_vectors(path: Path, texts: Sequence[Sequence[str]], *, bf16: bool = False, max_length: int | None = None,
                    batch_size: int = 64, show_progress: bool = True) -> list[torch.Tensor]:
    """The teacher's normalised vectors of each list in `texts` (sentence-transformers, no instruction;
    the model loaded once), of their first `max_length` tokens (None: the teacher's limit), under bf16
    autocast with `bf16` (the training's own setting)."""
    from sentence_transformers import SentenceTransformer

    device = teacher_device()
    model = SentenceTransformer(str(path), device=device.type)
    if max_length is not None:
        model.max_seq_length = min(max_length, model.max_seq_length or max_length)
    encoded = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in texts:
            vectors = model.encode(list(batch), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_tensor=True, show_progress_bar=show_progress)
            encoded.append(F.normalize(vectors.float(), dim=-1).cpu())
    return encoded


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def prepare(config: TrainConfig, pairs: list[Pair], *, show_progress: bool = True) -> TeacherData:
    """Teacher vectors and mined negatives for `pairs`, computed once per output directory."""
    passages = list(dict.fromkeys([p.positive for p in pairs] + [p.negative for p in pairs if p.negative]))
    index = {text: i for i, text in enumerate(passages)}
    positive = torch.tensor([index[p.positive] for p in pairs], dtype=torch.long)
    negative = torch.tensor([index[p.negative] if p.negative else -1 for p in pairs], dtype=torch.long)
    path = teacher_path(config.teacher)
    bf16 = use_bf16(config.bf16, teacher_device())
    meta = {"teacher": str(config.teacher), "teacher_sha256": _fingerprint(path), "data_sha256": file_sha256(config.data),
            "paragraphs_sha256": file_sha256(config.paragraphs) if config.paragraphs else None,
            "paragraph_pairs": config.paragraph_pairs, "pairs": len(pairs), "passages": len(passages),
            "mined_negatives": config.mined_negatives, "negative_margin": config.negative_margin,
            "teacher_bf16": bf16, "teacher_max_length": config.teacher_max_length}
    output = Path(config.output_dir)
    stored = output / TEACHER_META
    if stored.is_file() and (output / TEACHER_FILE).is_file() and json.loads(stored.read_text()) == meta:
        tensors = load_file(str(output / TEACHER_FILE))
        return TeacherData(pairs, passages, positive, negative, tensors["mined"], tensors["queries"], tensors["vectors"])
    queries, vectors = teacher_vectors(path, [[p.query for p in pairs], passages], bf16=bf16,
                                       max_length=config.teacher_max_length, show_progress=show_progress)
    groups: dict[str, list[int]] = {}
    for number, pair in enumerate(pairs):
        groups.setdefault(pair.source, []).append(number)
    mined = mine_negatives(queries, vectors, positive, list(groups.values()), [p.query for p in pairs],
                           k=config.mined_negatives, margin=config.negative_margin)
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".{TEACHER_FILE}.{os.getpid()}.tmp"
    save_file({"queries": queries.contiguous(), "vectors": vectors.contiguous(), "mined": mined.contiguous()},
              str(staging))
    os.replace(staging, output / TEACHER_FILE)
    staging = output / f".{TEACHER_META}.{os.getpid()}.tmp"
    staging.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(staging, stored)
    return TeacherData(pairs, passages, positive, negative, mined, queries, vectors)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, *, weight: float) -> torch.Tensor:
    """`(1 - weight) * InfoNCE + weight * KL(teacher || student)` over [queries, candidates] logits
    (query i's positive is candidate i)."""
    labels = torch.arange(student.shape[0], device=student.device)
    contrastive = F.cross_entropy(student, labels)
    kl = F.kl_div(F.log_softmax(student.float(), dim=-1), F.log_softmax(teacher.float(), dim=-1), log_target=True,
                  reduction="batchmean")
    return (1 - weight) * contrastive + weight * kl


def candidates(data: TeacherData, indices: list[int]) -> list[int]:
    """Passage indices a batch scores: the positives (in order), then given and mined negatives."""
    rows = torch.tensor(indices, dtype=torch.long)
    negatives = torch.cat([data.negative[rows], data.mined[rows].flatten()])
    return data.positive[rows].tolist() + [int(n) for n in negatives if n >= 0]


def distill_stage(config: TrainConfig, *, show_progress: bool = True) -> Stage:
    if not config.teacher:
        raise ValueError("the distill stage needs a teacher (--teacher or `teacher:` in the recipe): a "
                         "sentence-transformers folder, all-MiniLM-L6-v2 or all-mpnet-base-v2")
    pairs = read_distill_pairs(config)
    data = prepare(config, pairs, show_progress=show_progress)
    encoder, model = _encoder_stage(config)
    scale = config.scale or 50.0

    def loss(indices: list[int], step: int) -> tuple[torch.Tensor, int]:
        batch = [data.pairs[i] for i in indices]
        passages = candidates(data, indices)
        queries = collate(encoder.tokenize([p.query for p in batch], [p.instruction for p in batch]),
                          encoder.pad_token_id)
        docs = collate(encoder.tokenize([data.passages[i] for i in passages]), encoder.pad_token_id)
        tokens = int(queries["attention_mask"].sum() + docs["attention_mask"].sum())
        student = F.normalize(encoder.embed(queries), dim=-1) @ F.normalize(encoder.embed(docs), dim=-1).T * scale
        rows = torch.tensor(indices, dtype=torch.long)
        teacher = data.queries[rows] @ data.vectors[torch.tensor(passages, dtype=torch.long)].T
        teacher = (teacher / config.teacher_temperature).to(student.device)
        return distillation_loss(student, teacher, weight=config.distill_weight), tokens

    groups = None
    if config.batch_by_source:
        by_source: dict[str, list[int]] = {}
        for number, pair in enumerate(pairs):
            by_source.setdefault(pair.source, []).append(number)
        groups = list(by_source.values())
    return Stage(model, len(pairs), loss, groups)
