"""Row-by-row parity with the reference llm2vec 0.2.3 library on tiny random models.

Needs the reference venv (`make reference-venv`, or `$L2V_REFERENCE_PYTHON`); skipped without
it. To stay fast it runs the quick parity of benchmarks/reference_parity.py on the two tiny
models that differ in what matters (llama adds a BOS, qwen2 does not) plus a LoRA adapter:
every pooling, both attentions, batch sizes 1 and 32, on 1 thread (about half a minute).
The mistral and gemma models are covered by `benchmarks/reference_parity.py --quick`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _reference import reference_available  # noqa: E402

AVAILABLE, REASON = reference_available()


@pytest.mark.skipif(not AVAILABLE, reason=REASON)
def test_tiny_models_match_reference(tmp_path: Path) -> None:
    from reference_parity import THRESHOLD, run_parity, table

    outcome = run_parity(quick=True, workdir=tmp_path, archs=("llama", "qwen2"), scifact=2)
    results = outcome["results"]
    failed = [r for r in results if not r.passed]
    assert not failed, f"rows below cosine {THRESHOLD}:\n{table(failed)}"
    asserted = {(r.model, r.attention, r.pooling, r.batch_size) for r in results if r.asserted}
    assert len(asserted) == 2 * 2 * 3 * 2 + 1 * 3 * 2  # qwen2 is compared causally only (reference quirk)
    sanity = outcome["sanity"]
    for name, value in sanity.items():
        if "(< 1)" in name:
            assert value < 0.99, f"{name}: {value}"
        else:
            assert value >= THRESHOLD, f"{name}: {value}"
