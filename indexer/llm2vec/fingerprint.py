"""Encoder fingerprints: a short hash of what determines an encoder's vectors, without local paths.

An encoder's adapters are one stack on the base model, however they were named: a shipped recipe
(`provenance.model_adapters`, "gemma3-270m:mntp+supervised+distill3") and the same adapters passed
as extra ones (`provenance.adapters`, "gemma3-270m:mntp+supervised" plus `--adapter distill3`) load
into the same model and give the same vectors, so they get one fingerprint. Manifests written before
2026-12-08 hashed the two lists apart; `migrate_fingerprint` gives their encoder entry today's value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def spec_fingerprint(spec: dict[str, Any]) -> str:
    """The fingerprint of an encoder spec (`TextEncoder.spec()`): equal fingerprints give equal vectors."""
    return _digest(_one_stack(spec))


def migrate_fingerprint(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest's `encoder` entry (spec plus `fingerprint`) with the fingerprint `spec_fingerprint` gives.

    Only an entry whose stored fingerprint is the old hash of its own spec changes; any other entry
    (already current, or written by a spec this release does not know) is returned as it is.
    """
    spec = {key: value for key, value in entry.items() if key != "fingerprint"}
    if spec.get("adapters") and entry.get("fingerprint") == _digest(spec):  # without extras both hashes agree
        return {**spec, "fingerprint": spec_fingerprint(spec)}
    return entry


def _one_stack(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with its extra adapters' hashes appended to the recipe's, in stacking order."""
    extra = [adapter["sha256"] for adapter in spec.get("adapters", [])]
    if not extra:
        return spec
    return {**spec, "model_adapters": [*spec.get("model_adapters", []), *extra], "adapters": []}


def _digest(spec: dict[str, Any]) -> str:
    """A hash of `spec` without local paths: adapters by content, the model by its weights' hash when known."""
    spec = dict(spec)
    spec["adapters"] = [adapter["sha256"] for adapter in spec.get("adapters", [])]
    if spec.get("model_sha256"):
        spec.pop("model", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
