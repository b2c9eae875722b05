"""Distillation from a teacher (training/distill.py) with tiny random models, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from indexer.llm2vec.training import TrainConfig, train
from indexer.llm2vec.training.distill import (PARAGRAPH_SOURCE, TEACHER_FILE, TEACHER_META, candidates, distill_stage,
                                              distillation_loss, paragraph_pairs, prepare, read_distill_pairs)

pytest.importorskip("sentence_transformers", reason="distillation needs sentence-transformers (the bench extra)")

TOPICS = ["tides", "volcanoes", "jazz", "proteins", "castles", "coffee", "comets", "glaciers"]
PAIRS = [{"query": f"what about {t}", "positive": f"A passage on {t} and how {t} work in nature.",
          "source": "wikiqa" if i % 2 else "trecqa"} for i, t in enumerate(TOPICS)]
PAIRS[0]["negative"] = "A passage on volcanoes, not on the question."
PARAGRAPHS = [f"The {t} were studied for years. Scholars wrote many long books about {t} and their odd history "
              "across the world." for t in TOPICS[:4]] + ["No second sentence here at all"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A sentence-transformers model from a tiny random BERT and a word-level vocabulary."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("teacher")
    words = sorted({w for text in [json.dumps(PAIRS), *PARAGRAPHS] for w in re.findall(r"[a-z]+", text.lower())})
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    word = Transformer(str(root / "bert"), max_seq_length=64)
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")])
    model.save(str(root / "st"))
    return root / "st"


@pytest.fixture
def config(tmp_path, tiny_llama, tiny_teacher):
    pairs, paragraphs = tmp_path / "pairs.jsonl", tmp_path / "paragraphs.txt"
    pairs.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    paragraphs.write_text("\n".join(PARAGRAPHS) + "\n")

    def make(**overrides):
        settings = dict(model=str(tiny_llama), data=str(pairs), output_dir=str(tmp_path / "run"), teacher=str(tiny_teacher),
                        paragraphs=str(paragraphs), max_steps=4, batch_size=4, max_length=96, learning_rate=5e-3,
                        save_steps=2, lora_r=4, lora_alpha=8, gradient_checkpointing=False, bf16="false",
                        mined_negatives=2, negative_margin=10.0)  # a random teacher finds all alike
        settings.update(overrides)
        return TrainConfig.build("distill", **settings)

    return make


def test_paragraphs_become_first_sentence_to_rest_pairs():
    pairs = paragraph_pairs(PARAGRAPHS)
    assert len(pairs) == 4 and {p.source for p in pairs} == {PARAGRAPH_SOURCE}
    assert pairs[0].query == "The tides were studied for years."
    assert pairs[0].positive.startswith("Scholars wrote many long books about tides")
    assert paragraph_pairs(["Dr. Smith said no. That is short."]) == []  # too short to make a pair


def test_mined_negatives_are_never_a_positive_of_the_query_and_stay_in_its_source(config):
    cfg = config()
    pairs = read_distill_pairs(cfg)
    assert len(pairs) == len(PAIRS) + 4
    data = prepare(cfg, pairs, show_progress=False)
    assert data.mined.shape == (len(pairs), 2)
    for number, pair in enumerate(pairs):
        mined = [int(m) for m in data.mined[number] if m >= 0]
        assert mined, f"pair {number} got no negative"
        assert int(data.positive[number]) not in mined and pair.positive not in {data.passages[m] for m in mined}
        same_source = {int(data.positive[i]) for i, p in enumerate(pairs) if p.source == pair.source}
        assert set(mined) <= same_source
        scores = data.queries[number] @ data.vectors.T  # the teacher's top-ranked non-positives
        own = float(scores[data.positive[number]])
        ranked = [int(i) for i in scores.argsort(descending=True) if int(i) in same_source - {int(data.positive[number])}
                  and (own <= 0 or scores[i] < 10 * own)]
        assert torch.allclose(scores[mined], scores[ranked[:2]], atol=1e-5)  # the top two (ties aside)
    strict = prepare(config(negative_margin=1e-6, output_dir=cfg.output_dir + "-strict"), pairs, show_progress=False)
    positive_scores = (strict.queries * strict.vectors[strict.positive]).sum(-1)
    assert ((strict.mined == -1).all(dim=1) == (positive_scores > 0)).all()  # every negative scores above 1e-6 x a positive one


def test_loss_is_finite_and_decreases_on_a_fixed_batch(config):
    stage = distill_stage(config(), show_progress=False)
    optimizer = torch.optim.AdamW([p for p in stage.model.parameters() if p.requires_grad], lr=5e-3)
    batch, losses = [0, 2, 4, 6], []
    for step in range(4):
        loss, tokens = stage.loss(batch, step)
        assert torch.isfinite(loss) and tokens > 0
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_distillation_loss_is_contrastive_at_weight_0_and_zero_kl_when_student_matches():
    student = torch.tensor([[3.0, 1.0, 0.5], [0.2, 2.5, 1.0]])
    pure = distillation_loss(student, torch.zeros(2, 3), weight=0.0)
    assert torch.isclose(pure, torch.nn.functional.cross_entropy(student, torch.tensor([0, 1])))
    assert distillation_loss(student, student, weight=1.0).abs() < 1e-6
    assert distillation_loss(student, -student, weight=1.0) > 0.1


def test_candidates_are_positives_then_given_and_mined_negatives(config):
    cfg = config()
    data = prepare(cfg, read_distill_pairs(cfg), show_progress=False)
    chosen = candidates(data, [0, 1])
    assert chosen[:2] == data.positive[[0, 1]].tolist()
    assert data.passages.index(PAIRS[0]["negative"]) in chosen[2:]


def test_training_resumes_and_reuses_the_teacher_data(config):
    first = train(config(max_steps=2), show_progress=False)
    stamp = (first / TEACHER_FILE).stat().st_mtime_ns
    with (first / "train_log.jsonl").open("a") as log:  # a run killed after logging step 3, before its checkpoint
        log.write(json.dumps({"step": 3, "loss": 9.9}) + "\n")
    train(config(max_steps=4), show_progress=False)  # the rerun resumes at step 2
    steps = [json.loads(line)["step"] for line in (first / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the lost step 3 logged once, as redone
    assert (first / TEACHER_FILE).stat().st_mtime_ns == stamp  # neither re-encoded nor re-mined
    assert (first / "adapter_model.safetensors").is_file()


def test_a_run_resumes_without_its_optimizer_state(config, caplog):
    """A fresh clone of a run git tracks has the adapter and step but not Adam's moments (ignored)."""
    from safetensors.torch import load_file

    from indexer.llm2vec.training.checkpoint import CHECKPOINT, OPTIMIZER_STATE

    run = train(config(max_steps=2), show_progress=False)
    saved = load_file(str(run / CHECKPOINT / "adapter_model.safetensors"))
    (run / CHECKPOINT / OPTIMIZER_STATE).unlink()
    with caplog.at_level("WARNING"):
        train(config(max_steps=3), show_progress=False)
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3] and OPTIMIZER_STATE in caplog.text
    trained = load_file(str(run / CHECKPOINT / "adapter_model.safetensors"))
    assert any(not torch.equal(saved[key], trained[key]) for key in saved)  # step 3 trained on from step 2's


def test_an_exported_distilled_adapter_names_its_teacher_and_data(config, tmp_path):
    from indexer.llm2vec.training import export_adapter

    run = train(config(max_steps=2), show_progress=False)
    shipped = export_adapter(run, tmp_path / "shipped" / "distill", base_model="tiny:base")
    meta = json.loads((shipped / TEACHER_META).read_text())
    assert meta == json.loads((run / TEACHER_META).read_text())
    assert len(meta["teacher_sha256"]) == 64 and len(meta["paragraphs_sha256"]) == 64
    assert not (shipped / TEACHER_FILE).exists()  # the teacher's vectors stay in the run


def test_a_teacher_belongs_to_the_distill_stage(tmp_path):
    with pytest.raises(ValueError, match="teacher is for the distill stage"):
        TrainConfig.build("supervised", data="x", output_dir=str(tmp_path), teacher="all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig.build("distill", data="x", output_dir=str(tmp_path), distill_weight=1.5)


def test_teacher_follows_the_bf16_setting_and_records_it(config):
    fp32 = config(output_dir=config().output_dir + "-fp32")
    exact = prepare(fp32, read_distill_pairs(fp32), show_progress=False)
    bf16 = config(bf16="true", output_dir=fp32.output_dir + "-bf16")
    fast = prepare(bf16, read_distill_pairs(bf16), show_progress=False)
    assert json.loads((Path(bf16.output_dir) / TEACHER_META).read_text())["teacher_bf16"] is True
    assert json.loads((Path(fp32.output_dir) / TEACHER_META).read_text())["teacher_bf16"] is False
    assert torch.allclose(fast.vectors.norm(dim=-1), torch.ones(len(fast.vectors)), atol=1e-5)
    assert not torch.equal(fast.vectors, exact.vectors)  # bf16 did run: not the fp32 numbers
    assert (fast.vectors * exact.vectors).sum(-1).min() > 0.99  # but close to them


def test_teacher_reads_at_most_teacher_max_length_tokens(config):
    full = config(output_dir=config().output_dir + "-full")
    short = config(teacher_max_length=4, output_dir=full.output_dir + "-short")
    whole = prepare(full, read_distill_pairs(full), show_progress=False)
    cut = prepare(short, read_distill_pairs(short), show_progress=False)
    assert json.loads((Path(short.output_dir) / TEACHER_META).read_text())["teacher_max_length"] == 4
    # every passage is longer than 4 tokens ([CLS] + 2 words + [SEP]): each vector changes
    assert ((cut.vectors - whole.vectors).norm(dim=-1) > 1e-4).all()
    with pytest.raises(ValueError, match="teacher_max_length"):
        config(teacher_max_length=0)


def test_a_branch_reuses_the_runs_teacher_data(config, tmp_path, monkeypatch, stop_training_at):
    from indexer.llm2vec.training import branch_run

    stop_training_at(3, stage="distill")
    with pytest.raises(KeyboardInterrupt):
        train(config(max_steps=4), show_progress=False)
    monkeypatch.undo()
    run = tmp_path / "run"
    cooled = train(branch_run(run, tmp_path / "cooled", 1), show_progress=False)
    steps = [json.loads(line)["step"] for line in (cooled / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3] and (cooled / "adapter_model.safetensors").is_file()
    assert (cooled / TEACHER_FILE).stat().st_mtime_ns == (run / TEACHER_FILE).stat().st_mtime_ns  # not re-encoded
    assert (cooled / TEACHER_FILE).read_bytes() == (run / TEACHER_FILE).read_bytes()
