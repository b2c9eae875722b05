"""Merged models on disk: a base model with its LLM2Vec adapters merged in, built once, loaded fast.

Merging LoRA adapters with peft is most of a cold start (about 20 s for the default model's two
adapters on a 2-core CPU), and it gives the same weights every time for the same inputs. So the
merged model is saved as a plain model directory (safetensors weights, config, tokenizer) under
`cache_dir()/merged/<key>`, where the key hashes the inputs' identities: every file of the base
model directory and of each adapter directory by path, size, mtime and inode (never by reading
multi-GB weights), the dtype, and the versions of this cache format, transformers, peft and torch.
A changed input gives a new key; when an entry is saved, the entries it supersedes (same inputs
and versions) and those whose inputs no longer exist are removed.

An entry is written into a temporary directory and renamed into place, its `entry.json` last.
`entry.json` records the format version, the key and the size of every file; an entry whose
record is missing, from another version or another key, or whose files are missing or of another
size (a copy cut short) is removed and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator, Sequence

from .sources import cache_dir, file_identity

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENTRY_FILE = "entry.json"


def merged_root() -> Path:
    """Where merged models live: `cache_dir()/merged`."""
    return cache_dir() / "merged"


def _versions() -> dict[str, str]:
    found = {"format": str(FORMAT_VERSION)}
    for package in ("torch", "transformers", "peft"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "none"
    return found


def _directory_identity(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The identity of every regular file directly in `directory` (symlinks followed), by name."""
    files = sorted(p for p in Path(directory).iterdir() if p.is_file())
    return [{"name": p.name, **file_identity(p)} for p in files]


@dataclass(frozen=True)
class MergedModel:
    """Where the merged model of some inputs lives (whether or not it is built yet)."""

    key: str
    inputs: dict[str, Any]

    @property
    def path(self) -> Path:
        return merged_root() / self.key[:32]

    @classmethod
    def of(cls, model_dir: str | os.PathLike, adapters: Sequence[str | os.PathLike], dtype: str) -> "MergedModel":
        """The entry for `model_dir` with `adapters` merged in order, in `dtype` ("float32", ...)."""
        inputs = {"model": str(Path(model_dir).resolve()), "adapters": [str(Path(a).resolve()) for a in adapters],
                  "dtype": dtype}
        identity = {**inputs, "versions": _versions(), "model_files": _directory_identity(model_dir),
                    "adapter_files": [_directory_identity(a) for a in adapters]}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return cls(key, inputs)

    def verified(self) -> bool:
        """True when the entry exists and is whole; a damaged or foreign one is removed (with a warning)."""
        return entry_verified(self.path, self.key, "merged model")

    def save(self, model: Any, tokenizer: Any) -> Path:
        """Write `model` (adapters merged) and `tokenizer` as this entry, atomically; returns its path.

        If another process saved the same entry first, its copy is kept. Entries of the same
        inputs with another key (inputs changed since) are removed.
        """
        with staged_entry(merged_root(), self.path, self.key, {"inputs": self.inputs, "versions": _versions()}) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        self._remove_superseded()
        return self.path

    def _remove_superseded(self) -> None:
        """Remove entries of the same inputs built from older files, and entries whose inputs are gone."""
        for record_path in merged_root().glob(f"*/{ENTRY_FILE}"):
            if record_path.parent == self.path:
                continue
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                inputs = record["inputs"]
                gone = not all(Path(p).is_dir() for p in [inputs["model"], *inputs["adapters"]])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if gone or (inputs == self.inputs and record.get("versions") == _versions()):
                logger.info("removing the superseded merged model %s", record_path.parent)
                shutil.rmtree(record_path.parent, ignore_errors=True)


def entry_verified(path: Path, key: str, what: str) -> bool:
    """True when the cache entry at `path` exists and is whole (its `entry.json` names `key` and this
    format, every file it lists has its recorded size); a damaged or foreign one is removed."""
    if not path.exists():
        return False
    problem = None
    try:
        record = json.loads((path / ENTRY_FILE).read_text(encoding="utf-8"))
        if record.get("format") != FORMAT_VERSION or record.get("key") != key:
            problem = "it was written by another version"
        else:
            for name, size in record["files"].items():
                file = path / name
                if not file.is_file() or file.stat().st_size != size:
                    problem = f"{name} is missing or cut short"
                    break
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        problem = f"its {ENTRY_FILE} is unreadable ({exc})"
    if problem is None:
        return True
    logger.warning("rebuilding the %s cache entry %s: %s", what, path, problem)
    shutil.rmtree(path, ignore_errors=True)
    return False


@contextmanager
def staged_entry(root: Path, path: Path, key: str, record: dict[str, Any]) -> Iterator[Path]:
    """A temporary folder under `root` to write an entry into; on success it gets its `entry.json`
    (format, key, `record`, every file's size) last and is renamed to `path`, atomically. If another
    process published the same entry first, its copy is kept."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        yield staging
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
        full = {"format": FORMAT_VERSION, "key": key, **record, "files": files}
        (staging / ENTRY_FILE).write_text(json.dumps(full, indent=2), encoding="utf-8")
        try:
            staging.rename(path)
        except OSError:  # another process finished the same entry first
            if not entry_verified(path, key, "cache"):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
