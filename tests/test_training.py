"""Training on tiny random models: objectives, stage wiring, checkpoints and resume."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from indexer.llm2vec import LLM2VecEncoder
from indexer.llm2vec.training import TrainConfig, train
from indexer.llm2vec.training.data import grouped_batches
from indexer.llm2vec.training.objectives import IGNORE, mask_tokens, mntp_loss
from indexer.llm2vec.training.stages import pack_blocks
from tiny_models import CORPUS, build_tokenizer

PAIRS = [
    {"query": "who wrote the fox sentence", "positive": "The quick brown fox jumps over the lazy dog.",
     "negative": "Scientific claims are supported or refuted.", "source": "wikiqa"},
    {"query": "what do encoders need", "positive": "Retrieval augmented generation needs a good text encoder."},
    {"query": "show me code", "positive": "def encode(texts): return model(texts)", "source": "msrp"},
    {"query": "unicode text", "positive": "Héllo wörld — ünïcode façade"},
]


@pytest.fixture
def data(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(CORPUS[:6]) + "\n", encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n", encoding="utf-8")
    return texts, pairs


def _config(stage, model, data_path, out, **overrides):
    settings = dict(max_steps=6, batch_size=4, max_length=32, learning_rate=5e-3, save_steps=2, lora_r=4,
                    lora_alpha=8, gradient_checkpointing=False, bf16="false")
    settings.update(overrides)
    return TrainConfig.build(stage, model=str(model), data=str(data_path), output_dir=str(out), **settings)


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_mask_tokens_targets_only_real_non_special_tokens():
    ids = torch.tensor([[0, 5, 6, 7, 8, 9, 10, 11], [1, 1, 0, 5, 6, 7, 8, 9]])
    attention = torch.tensor([[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1]])
    masked, labels = mask_tokens(ids, attention, mask_token_id=3, ratio=0.99, vocab_size=50, special_ids={0, 1},
                                 generator=torch.Generator().manual_seed(0))
    target = labels != IGNORE
    assert not target[ids == 0].any() and not target[attention == 0].any()
    assert target.sum() == 12  # every real non-special token at ratio ~1
    assert torch.equal(labels[target], ids[target])
    assert (masked[target] == 3).float().mean() > 0.5  # mostly the mask token (80/10/10)


def test_mntp_loss_predicts_token_i_from_position_i_minus_1():
    vocab, dim = 7, 5
    hidden = torch.randn(1, 4, dim)
    head = torch.nn.Linear(dim, vocab, bias=False)
    labels = torch.tensor([[IGNORE, 3, IGNORE, 6]])  # tokens 1 and 3 are masked
    expected = torch.nn.functional.cross_entropy(head(hidden[0, [0, 2]]), torch.tensor([3, 6]))
    torch.testing.assert_close(mntp_loss(hidden, labels, head), expected)


@pytest.mark.parametrize("adds_bos", [True, False])
def test_mntp_blocks_start_as_the_tokenizer_starts_a_text(adds_bos, data, tmp_path):
    tokenizer = build_tokenizer(adds_bos=adds_bos)
    config = _config("mntp", "unused", data[0], tmp_path / "mntp", max_steps=2, batch_size=2, max_length=16)
    blocks = pack_blocks(CORPUS[:6], tokenizer, config)
    assert blocks.shape[1] == 16 and len(blocks) >= 4  # enough for max_steps x batch_size
    lead = [tokenizer.bos_token_id] if adds_bos else []
    assert all(block[: len(lead)].tolist() == lead for block in blocks)
    stream = blocks[:, len(lead):].flatten().tolist()  # the rest: texts joined by EOS, no BOS inside
    assert tokenizer.bos_token_id not in stream and stream.count(tokenizer.eos_token_id) >= 1


def test_mntp_loss_falls_and_adapter_loads(tiny_llama, data, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train(_config("mntp", tiny_llama, data[0], tmp_path / "mntp", max_steps=12, batch_size=2,
                            max_length=16), show_progress=False)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]  # peft's noise, not the user's
    losses = _losses(out)
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert (out / "adapter_model.safetensors").is_file() and (out / "llm2vec_config.json").is_file()
    keys = load_file(str(out / "adapter_model.safetensors"))
    assert all(".layers." in key and "lm_head" not in key for key in keys)  # fits the encoder (no LM head)
    base = LLM2VecEncoder.from_pretrained(tiny_llama).encode(CORPUS[:2])
    adapted = LLM2VecEncoder.from_pretrained(tiny_llama, [out]).encode(CORPUS[:2])
    assert not np.allclose(base, adapted, atol=1e-4)


def test_simcse_views_are_the_same_text(tiny_llama, data, tmp_path, monkeypatch):
    seen = []
    original = LLM2VecEncoder.embed

    def spy(self, features):
        seen.append(torch.as_tensor(features["input_ids"]).clone())
        return original(self, features)

    monkeypatch.setattr(LLM2VecEncoder, "embed", spy)
    train(_config("simcse", tiny_llama, data[0], tmp_path / "simcse", max_steps=2), show_progress=False)
    assert len(seen) == 4 and torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3])


def test_supervised_stacks_on_mntp_and_changes_embeddings(tiny_llama, data, tmp_path):
    mntp = train(_config("mntp", tiny_llama, data[0], tmp_path / "mntp", max_steps=2, batch_size=2, max_length=16),
                 show_progress=False)
    out = train(_config("supervised", tiny_llama, data[1], tmp_path / "sup", adapters=[str(mntp)], max_steps=8),
                show_progress=False)
    losses = _losses(out)
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    only_mntp = LLM2VecEncoder.from_pretrained(tiny_llama, [mntp]).encode(CORPUS[:2])
    stacked = LLM2VecEncoder.from_pretrained(tiny_llama, [mntp, out]).encode(CORPUS[:2])
    assert not np.allclose(only_mntp, stacked, atol=1e-4)


def test_grouped_batches_keep_each_batch_in_one_group_and_replay_on_resume():
    groups = [list(range(0, 10)), list(range(10, 13)), [13]]
    stream = grouped_batches(groups, batch_size=4, seed=3)
    first = [next(stream) for _ in range(12)]  # 3 epochs of 4 batches: 4 + 4 + 2 from group 0, 3 from group 1
    home = {i: g for g, members in enumerate(groups) for i in members}
    for batch in first:
        assert len({home[i] for i in batch}) == 1 and 2 <= len(batch) <= 4
    assert all(13 not in batch for batch in first)  # a lone example has nothing to contrast with
    epoch = sorted(i for batch in first[:4] for i in batch)
    assert epoch == list(range(13))  # every example of the first epoch once
    resumed = grouped_batches(groups, batch_size=4, seed=3, skip=5)
    assert [next(resumed) for _ in range(7)] == first[5:]
    with pytest.raises(ValueError, match="fewer than two"):
        next(grouped_batches([[0], [1]], batch_size=4, seed=0))


def test_supervised_batches_come_from_one_source(tiny_llama, data, tmp_path, monkeypatch):
    from indexer.llm2vec.training import stages

    seen: list[set[str]] = []
    build = stages.supervised_stage

    def spying(config):
        stage = build(config)
        pairs = stages.read_pairs(config.data, config.instruction)
        inner = stage.loss

        def loss(indices, step):
            seen.append({pairs[i].source for i in indices})
            return inner(indices, step)

        stage.loss = loss
        return stage

    monkeypatch.setitem(stages.STAGE_BUILDERS, "supervised", spying)
    rows = [dict(p, source="a" if n % 2 else "b") for n, p in enumerate(PAIRS * 2)]
    mixed = tmp_path / "two_sources.jsonl"
    mixed.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    train(_config("supervised", tiny_llama, mixed, tmp_path / "sup", max_steps=4, batch_size=2), show_progress=False)
    assert len(seen) == 4 and all(len(sources) == 1 for sources in seen)


def test_resume_continues_from_the_saved_step(tiny_llama, data, tmp_path, monkeypatch, stop_training_at):
    straight = train(_config("supervised", tiny_llama, data[1], tmp_path / "straight"), show_progress=False)

    stop_training_at(4)
    with pytest.raises(KeyboardInterrupt):
        train(_config("supervised", tiny_llama, data[1], tmp_path / "resumed"), show_progress=False)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4
    monkeypatch.undo()  # the stage trains on (stop_training_at patched through this monkeypatch)
    resumed = train(_config("supervised", tiny_llama, data[1], tmp_path / "resumed"), show_progress=False)
    steps = [json.loads(line)["step"] for line in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    a = load_file(str(straight / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_saved_adapters_list_their_target_modules_in_one_order(tiny_llama, data, tmp_path):
    # peft keeps target_modules as a set, written in an order that changes between processes: each
    # commit of a long run's checkpoint showed the same adapter's config as changed
    out = train(_config("supervised", tiny_llama, data[1], tmp_path / "sup", max_steps=2), show_progress=False)
    for folder in (out, out / "checkpoint"):
        modules = json.loads((folder / "adapter_config.json").read_text())["target_modules"]
        assert len(modules) > 2 and modules == sorted(modules)


def test_config_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        TrainConfig.build("dpo", data="x", output_dir="y")
    bad = tmp_path / "c.yaml"
    bad.write_text("max_stepz: 3\n")
    with pytest.raises(ValueError, match="unknown settings max_stepz"):
        TrainConfig.build("mntp", bad, data="x", output_dir="y")
    with pytest.raises(ValueError, match="missing setting"):
        TrainConfig.build("mntp")


def test_export_ships_half_size_weights_that_embed_like_the_run(tiny_llama, data, tmp_path):
    from indexer.llm2vec.training import export_adapter

    run = train(_config("mntp", tiny_llama, data[0], tmp_path / "run", max_steps=2, batch_size=2, max_length=16),
                show_progress=False)
    shipped = export_adapter(run, tmp_path / "shipped" / "mntp", base_model="tiny:base")
    assert sorted(p.name for p in shipped.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "llm2vec_config.json", "train_config.json",
        "train_log.jsonl", "train_provenance.json"]  # no optimizer checkpoint, no staging leftovers
    assert {t.dtype for t in load_file(str(shipped / "adapter_model.safetensors")).values()} == {torch.float16}
    assert json.loads((shipped / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny:base"
    full = LLM2VecEncoder.from_pretrained(tiny_llama, [run]).encode(CORPUS[:3], normalize=True)
    half = LLM2VecEncoder.from_pretrained(tiny_llama, [shipped]).encode(CORPUS[:3], normalize=True)
    assert np.einsum("ij,ij->i", full, half).min() > 0.9999


def test_export_refuses_an_unfinished_run(tmp_path):
    from indexer.llm2vec.training import export_adapter

    with pytest.raises(FileNotFoundError, match="finish the run"):
        export_adapter(tmp_path, tmp_path / "out")


def test_export_checkpoint_ships_a_stopped_run_at_its_newest_checkpoint(tiny_llama, data, tmp_path, stop_training_at):
    from indexer.llm2vec.training import export_adapter

    stop_training_at(3)  # steps 1-3 logged, the newest checkpoint at step 2
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_config("supervised", tiny_llama, data[1], run), show_progress=False)
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        export_adapter(run, tmp_path / "refused")
    midway = export_adapter(run, tmp_path / "midway", checkpoint=True)
    assert json.loads((midway / "train_provenance.json").read_text())["steps"] == 2
    assert [json.loads(line)["step"] for line in (midway / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    saved = load_file(str(run / "checkpoint" / "adapter_model.safetensors"))
    shipped = load_file(str(midway / "adapter_model.safetensors"))
    assert shipped.keys() == saved.keys()
    for key in saved:
        torch.testing.assert_close(shipped[key], saved[key].half())
    base = LLM2VecEncoder.from_pretrained(tiny_llama).encode(CORPUS[:3], normalize=True)
    trained = LLM2VecEncoder.from_pretrained(tiny_llama, [midway]).encode(CORPUS[:3], normalize=True)
    assert np.einsum("ij,ij->i", base, trained).min() < 0.9999


def test_export_checkpoint_refuses_a_run_without_one(tmp_path):
    from indexer.llm2vec.training import export_adapter

    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        export_adapter(tmp_path, tmp_path / "out", checkpoint=True)


def test_the_schedule_warms_up_decays_at_its_horizon_and_cools_down_at_the_end():
    def rates(**settings):
        config = TrainConfig.build("supervised", data="x", output_dir="y", learning_rate=1.0, **settings)
        return [config.learning_rate_at(step) for step in range(config.max_steps)]

    assert rates(max_steps=6, warmup_steps=2) == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])  # as before
    assert rates(max_steps=6, warmup_steps=2, decay_steps=10, cooldown_steps=3) == pytest.approx(
        [0.5, 1.0, 1.0, 7 / 8, 7 / 8 * 2 / 3, 7 / 8 * 1 / 3])  # decay to 0 at step 10, cool-down from step 3
    with pytest.raises(ValueError, match="cooldown_steps"):
        TrainConfig.build("supervised", data="x", output_dir="y", max_steps=4, cooldown_steps=5)


def test_a_branch_cools_a_stopped_run_down_on_the_batches_it_would_have_seen(tiny_llama, data, tmp_path, monkeypatch,
                                                                             stop_training_at):
    from click.testing import CliRunner

    from indexer.llm2vec.training import branch_run
    from retriever.cli import main

    straight = train(_config("supervised", tiny_llama, data[1], tmp_path / "straight"), show_progress=False)
    stop_training_at(3)  # the run's newest checkpoint at step 2 of 6
    with pytest.raises(KeyboardInterrupt):
        train(_config("supervised", tiny_llama, data[1], tmp_path / "run"), show_progress=False)
    monkeypatch.undo()
    run_log = (tmp_path / "run" / "train_log.jsonl").read_text()

    result = CliRunner().invoke(main, ["train", "branch", str(tmp_path / "run"), str(tmp_path / "cooled"),
                                       "--cooldown-steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    cooled = [json.loads(line) for line in (tmp_path / "cooled" / "train_log.jsonl").read_text().splitlines()]
    ran = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in cooled] == [1, 2, 3, 4]
    # the same weights and batches as the run up to its cool-down, then the rate falls to zero by step 4
    assert [r["loss"] for r in cooled] == pytest.approx([r["loss"] for r in ran[:4]], abs=1e-4)
    assert [r["lr"] for r in cooled[2:]] == pytest.approx([5e-3 * 4 / 6, 5e-3 * 4 / 6 / 2])
    assert json.loads((tmp_path / "cooled" / "train_provenance.json").read_text())["steps"] == 4
    assert (tmp_path / "run" / "train_log.jsonl").read_text() == run_log  # the run is left as it was
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    again = branch_run(tmp_path / "run", tmp_path / "cooled", 5)  # an existing branch resumes as it is
    assert (again.max_steps, again.cooldown_steps, again.decay_steps) == (4, 2, 6)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    refused = CliRunner().invoke(main, ["train", "branch", str(tmp_path / "run"), str(tmp_path / "other"),
                                        "--cooldown-steps", "2"])
    assert refused.exit_code != 0 and "name a new folder" in refused.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
