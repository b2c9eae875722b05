"""Training runs that outlast a session resume on a fresh clone: git tracks their checkpoint.

The one-epoch recipes take many sessions on 2 CPU cores. They trained into `.cache/train/`, which
git ignores, so a session that started on a new checkout found no checkpoint and began again at
step 0 (the Gemma epoch lost 165 steps, about 55 minutes, that way on 2026-12-03).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNS = ("train-distill-epoch", "train-gemma3-epoch")

pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("make") is None,
                                reason="needs the git checkout and make")


def ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("target", LONG_RUNS)
def test_a_long_run_keeps_its_checkpoint_where_git_tracks_it(target):
    commands = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    outputs = re.findall(r"l2v train distill .*--output (\S+)", commands)
    assert len(outputs) == 1, commands
    run = outputs[0]
    assert not Path(run).is_absolute()
    for kept in ("checkpoint/adapter_model.safetensors", "checkpoint/trainer_state.json", "train_log.jsonl",
                 "train_config.json", "teacher.json"):
        assert not ignored(f"{run}/{kept}"), f"{run}/{kept} is git-ignored: a fresh clone restarts {target} at step 0"
    # The teacher's vectors (hundreds of MB, recomputed from the data), Adam's moments (30 MB a checkpoint,
    # restarted from zero) and a checkpoint being swapped in stay out.
    for left_out in ("teacher.safetensors", "checkpoint/optimizer.safetensors", "checkpoint.tmp/optimizer.safetensors",
                     "checkpoint.old/trainer_state.json"):
        assert ignored(f"{run}/{left_out}"), f"{run}/{left_out} would be committed"
