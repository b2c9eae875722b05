"""Versions of the adapter recipes shipped for embedded models ("smollm2-135m:mntp+supervised@2").

An embedded model ships one set of trained adapters (`pretrained/<name>/<stage>`), numbered by
`SHIPPED_VERSIONS`. A recipe name may carry the version it expects after an "@"; a name without one
means version 1, the first adapters shipped, so every index manifest written before versions
existed keeps naming what it was built with. Canonical names omit "@1" for the same reason.

When retrained adapters replace the shipped ones, bump the model's entry here: names (and index
manifests) of the older version then fail with `RecipeVersionError`, whose message gives the exact
command that rebuilds the index with the shipped version, instead of loading other vectors.

Each shipped recipe also names how hybrid search fuses its dense and keyword hits (`HYBRID_FUSIONS`)
and may name the chunk length of the indexes built with it (`INDEX_CHUNK_TOKENS`).
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from .errors import ModelLoadError

SHIPPED_VERSIONS: dict[str, int] = {"smollm2-135m": 1}
"""Version of the adapters shipped in `pretrained/<name>/`; embedded models not listed ship version 1."""
FusionFunction = Literal["rrf", "convex"]
FUSION_FUNCTIONS: tuple[str, ...] = get_args(FusionFunction)


@dataclass(frozen=True)
class HybridFusion:
    """How hybrid search fuses an index's dense and keyword lists (`retriever.fusion`): `function`
    "rrf" (reciprocal ranks) or "convex" (min-max normalised scores), the dense list weighing
    `dense_weight` where the keyword list weighs 1."""

    function: FusionFunction = "rrf"
    dense_weight: float = 1.0

    def overridden(self, function: str | None = None, dense_weight: float | None = None) -> "HybridFusion":
        """This fusion with `function` and `dense_weight` put in where given (None keeps its own)."""
        return HybridFusion(self.function if function is None else function,  # type: ignore[arg-type]
                            self.dense_weight if dense_weight is None else dense_weight)


HYBRID_FUSIONS: dict[str, HybridFusion] = {
    "smollm2-135m:mntp+supervised": HybridFusion("rrf", 0.25),
    "smollm2-135m:mntp+supervised+distill": HybridFusion("rrf", 0.25),
    "smollm2-135m:mntp+supervised+distill2": HybridFusion("convex", 1.0),
    "gemma3-270m:mntp+supervised+distill2": HybridFusion("convex", 2.0),
    "gemma3-270m:mntp+supervised+distill3": HybridFusion("convex", 2.0),
}
"""The fusion of hybrid search for a shipped recipe, by its canonical name: chosen with
benchmarks/fusion.py on a development split, never on a test set. A recipe not listed, or stacked
with other adapters, fuses reciprocal ranks with equal weights (RRF needs no tuned scale).

SmolLM2's RRF 0.25 (the first two recipes): on SciFact's 809 train queries
(results/fusion-scifact-train.json) NDCG@10 fell steadily with the dense weight (0.690 at 0, 0.679
at 0.25, 0.638 at 1) while Recall@100 rose (0.925, 0.931, 0.943); 0.25 kept the dense list
(paraphrases, other scripts) at 0.011 below keywords alone; the distilled recipe's curve was the same
(results/fusion-scifact-train-distill.json). distill2 was scored with both functions at the depth
users search (k = 10) and the tables' (k = 300) (results/fusion-scifact-train-distill2.json): RRF
stays below keywords alone at every dense weight, while the convex combination lifts NDCG@10 above
them with a broad plateau from weight 1 to 2; weight 1 has the best mean over the two depths.
Gemma 3 270M's distill2, scored the same way (results/fusion-scifact-train-gemma3-distill2.json),
has the same shape: RRF at most 0.005 above keywords alone (0.691), convex up to 0.723 on a plateau
from weight 1 to 2, where weight 1.5 had the best mean over the two depths (0.719; weight 1: 0.718).
Since its indexes chunk at 128 tokens with a keyword row per whole document (`INDEX_CHUNK_TOKENS`,
`indexer.keywords`), it was scored again (results/fusion-scifact-train-gemma3-chunk128-dockeywords.json):
keywords alone 0.690, RRF at most 0.706, convex 0.720 / 0.727 / 0.730 / 0.727 (mean over the two
depths) at weights 1 / 1.5 / 2 / 3, so weight 2. distill3 (distill2's model, data and teacher,
trained longer), scored the same way (results/fusion-scifact-train-gemma3-distill3.json): keywords
alone 0.690, RRF at most 0.716, convex 0.728 / 0.734 / 0.736 / 0.733 at weights 1 / 1.5 / 2 / 3, so
weight 2 again."""
INDEX_CHUNK_TOKENS: dict[str, int] = {
    "gemma3-270m:mntp+supervised+distill2": 128,
    "gemma3-270m:mntp+supervised+distill3": 128,
}
"""The chunk length (tokens) of a new index for a shipped recipe, where it differs from the encoder's
doc_max_length (400): chosen on a development split, never on a test set; an index keeps the length
it was built with (its manifest). Gemma 3 270M's adapters learnt on texts of at most 80 tokens, and
on SciFact's train queries its dense NDCG@10 was 0.656 / 0.739 / 0.737 with chunks of 400 / 128 /
80 tokens (results/chunks-scifact-train-{400,128,80}.json); distill3 learnt on the same 80-token texts."""
FIRST_VERSION = 1
BASE_RECIPE = "base"
_VERSION = re.compile(r"[1-9][0-9]*")


class RecipeVersionError(ModelLoadError):
    """A recipe version this installation does not ship (the message says how to rebuild)."""


@dataclass(frozen=True)
class RecipeName:
    """`model[:recipe][@version]` taken apart; `recipe` is "" when the name gives none."""

    model: str
    recipe: str
    version: int | None

    def canonical(self, recipe: str) -> str:
        """`model:recipe`, plus "@N" for versions after the first ("base" has no version)."""
        version = self.version or shipped_version(self.model)
        suffix = f"@{version}" if recipe != BASE_RECIPE and version != FIRST_VERSION else ""
        return f"{self.model}:{recipe}{suffix}"


def shipped_version(model: str) -> int:
    """The version of `model`'s shipped adapters."""
    return SHIPPED_VERSIONS.get(model, FIRST_VERSION)


def parse_recipe_name(text: str) -> RecipeName:
    """Split "smollm2-135m:mntp+supervised@2" into (model, recipe, version); a bad version is an error."""
    name, colon, rest = text.partition(":")
    if not colon:  # "smollm2-135m@2": the default recipe of a version
        name, at, version = text.partition("@")
        rest = f"@{version}" if at else ""
    recipe, at, version = rest.partition("@")
    if not at:
        return RecipeName(name, recipe, None)
    if not _VERSION.fullmatch(version):
        raise ModelLoadError(f"{text!r}: the recipe version after '@' must be a positive integer, e.g. "
                             f"{name}:{recipe or 'mntp+supervised'}@{shipped_version(name)}")
    return RecipeName(name, recipe, int(version))


def check_version(name: RecipeName, *, manifest: Mapping[str, Any] | None = None,
                  index_dir: str | Path | None = None) -> None:
    """Raise `RecipeVersionError` when `name` asks for a version other than the shipped one
    (`manifest` and `index_dir`: the index that named it, for the rebuild command)."""
    shipped = shipped_version(name.model)
    if name.recipe == BASE_RECIPE or (name.version or FIRST_VERSION) == shipped:
        return
    asked = f"{name.model}:{name.recipe or '<default>'}@{name.version or FIRST_VERSION}"
    message = (f"{asked} is not shipped by this installation of llm2vec-retriever: it ships version {shipped} "
               f"of {name.model}'s adapters")
    if index_dir is None:
        raise RecipeVersionError(f"{message}. Use {name.model} (= @{shipped}), or install the release that "
                                 f"shipped version {name.version or FIRST_VERSION}.")
    command = rebuild_command(manifest or {}, index_dir, name.model)
    raise RecipeVersionError(f"{message}; the index {index_dir} was built with {asked}. Rebuild it with the "
                             f"shipped encoder:\n  {command}\nor open it with the release that shipped its version.")


def rebuild_command(manifest: Mapping[str, Any], index_dir: str | Path, model: str) -> str:
    """`l2v index build` for a new index next to `index_dir` with its sources (the files its documents
    came from, read from its SQLite), its chunking and factory, and `model`'s shipped recipe."""
    target = Path(index_dir)
    parts = ["l2v", "index", "build", str(target.with_name(f"{target.name}-v{shipped_version(model)}"))]
    parts += _sources(target) or ["SOURCES..."]
    parts += ["--model", model]
    chunking = manifest.get("chunking") or {}
    for flag, value in (("--chunk-tokens", chunking.get("chunk_tokens")), ("--overlap", chunking.get("overlap")),
                        ("--factory", manifest.get("factory")),
                        ("--document-instruction", manifest.get("document_instruction"))):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _sources(index_dir: Path, most: int = 10) -> list[str]:
    """The source files of the index's documents (their common directory when more than `most`)."""
    database = index_dir / "meta.sqlite"
    if not database.is_file():
        return []
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT DISTINCT source FROM documents WHERE source IS NOT NULL "
                                      "AND source != '' ORDER BY source").fetchall()
    except sqlite3.Error:
        return []
    sources = [row[0] for row in rows]
    if len(sources) > most:
        return [os.path.commonpath(sources) or "."]
    return sources


def check_manifest_recipe(manifest: Mapping[str, Any], index_dir: str | Path | None = None) -> None:
    """`check_version` for the model an index manifest names (no-op for non-embedded models)."""
    from .sources import EMBEDDED_MODELS

    model = (manifest.get("encoder") or {}).get("model")
    if not isinstance(model, str):
        return
    name = parse_recipe_name(model)
    if name.model in EMBEDDED_MODELS:
        check_version(name, manifest=manifest, index_dir=index_dir)


def shipped_recipe(encoder_spec: Mapping[str, Any]) -> str | None:
    """The shipped recipe an encoder spec (an index manifest's) is, by canonical name; None when
    other adapters are stacked on it, whose choices were never made for it."""
    return None if encoder_spec.get("adapters") else str(encoder_spec.get("model"))


def hybrid_fusion(encoder_spec: Mapping[str, Any]) -> HybridFusion:
    """The fusion of hybrid search for the encoder an index manifest describes."""
    return HYBRID_FUSIONS.get(shipped_recipe(encoder_spec), HybridFusion())


def index_chunk_tokens(encoder_spec: Mapping[str, Any]) -> int | None:
    """The chunk length of a new index for the encoder `encoder_spec` describes (None: its doc_max_length)."""
    return INDEX_CHUNK_TOKENS.get(shipped_recipe(encoder_spec))
