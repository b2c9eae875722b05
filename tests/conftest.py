"""Shared fixtures: tiny random models built from configs, cached per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_models import build_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """`make(arch="llama", adds_bos=True)` -> directory of a tiny random model (built once)."""
    built: dict[tuple[str, bool], Path] = {}

    def make(arch: str = "llama", adds_bos: bool = True) -> Path:
        key = (arch, adds_bos)
        if key not in built:
            built[key] = build_model_dir(tmp_path_factory.mktemp(f"{arch}-{int(adds_bos)}"), arch, adds_bos=adds_bos)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory) -> Path:
    return tiny_model_factory("llama")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_llama):
    from indexer.llm2vec import LLM2VecEncoder

    return LLM2VecEncoder.from_pretrained(tiny_llama)


@pytest.fixture
def stop_training_at(monkeypatch):
    """`stop_training_at(step, stage="supervised")`: that stage raises KeyboardInterrupt when it reaches
    `step`, as a killed run stops (its newest checkpoint is the save before it); undone at test end."""
    from indexer.llm2vec.training import stages

    def stop(step: int, stage: str = "supervised") -> None:
        builder = stages.STAGE_BUILDERS[stage]

        def stopping(config):
            built = builder(config)
            inner = built.loss

            def loss(indices, at):
                if at == step:
                    raise KeyboardInterrupt(f"simulated stop at step {step}")
                return inner(indices, at)

            built.loss = loss
            return built

        monkeypatch.setitem(stages.STAGE_BUILDERS, stage, stopping)

    return stop
