"""The model card (README.md) of an exported sentence-transformers folder.

It records what the vectors depend on: the base model and its hash, each adapter with its hash,
training stage, data hash and steps (from the adapter's `train_config.json` and
`train_provenance.json`), the encoder settings, the prompts, the benchmark rows measured with
this exact encoder, and where sentence-transformers' results can differ from `LLM2VecEncoder`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .sources import EMBEDDED_MODELS
from .tokenization import adds_bos

if TYPE_CHECKING:
    from .encoder import LLM2VecEncoder

_DATASETS = ("scifact", "cacm", "npl")


def adapter_records(encoder: "LLM2VecEncoder") -> list[dict[str, Any]]:
    """One record per adapter merged into the encoder, outermost last, with its training files."""
    provenance = encoder.provenance
    name, _, recipe = str(provenance.get("model", "")).partition(":")
    directories: list[Path | None] = []
    if name in EMBEDDED_MODELS and recipe:
        directories += [Path(d) for d in EMBEDDED_MODELS[name].recipe_adapters(recipe)]
    else:
        directories += [None] * len(provenance.get("model_adapters", []))
    hashes = list(provenance.get("model_adapters", []))
    for adapter in provenance.get("adapters", []):
        directories.append(Path(adapter["path"]))
        hashes.append(adapter["sha256"])
    records = []
    for directory, sha in zip(directories, hashes):
        record: dict[str, Any] = {"path": directory, "sha256": sha}
        if directory is not None:
            record["config"] = _read_json(directory / "train_config.json")
            record["provenance"] = _read_json(directory / "train_provenance.json")
        records.append(record)
    return records


def model_card(
    encoder: "LLM2VecEncoder",
    prompts: Mapping[str, str],
    *,
    normalize: bool,
    max_seq_length: int,
    quality: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The README.md text for the exported folder."""
    provenance, config = encoder.provenance, encoder.config
    model = str(provenance.get("model", type(encoder.model).__name__))
    base, _, recipe = model.partition(":") if model.partition(":")[0] in EMBEDDED_MODELS else (model, "", "")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, llm2vec]",
        "---",
        "",
        f"# {model} as a text encoder (LLM2Vec)",
        "",
        f"Exported by `llm2vec-retriever` from `{model}`: a decoder-only LLM with "
        f"{'bidirectional' if encoder.bidirectional else 'causal'} attention, {config.pooling_mode} pooling over "
        f"the text tokens (the instruction is attended but not pooled), {encoder.dim} dimensions"
        f"{', L2-normalised' if normalize else ''}. Every adapter is merged into `model.safetensors`.",
        "",
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/folder")',
        'docs = model.encode_document(["LLM2Vec turns decoders into encoders."])',
        'query = model.encode_query("what is llm2vec?")                     # the `query` prompt',
        'claim = model.encode("Vitamin D prevents fractures", prompt_name="scientific_claim")',
        "```",
        "",
        "Documents take no prompt; queries take one of the prompts below. The same folder loads in",
        "`llm2vec-retriever` with identical settings:",
        "",
        "```python",
        "from indexer.llm2vec import LLM2VecEncoder",
        'encoder = LLM2VecEncoder.from_pretrained("path/to/this/folder")',
        "```",
        "",
        "## Prompts",
        "",
        "| prompt name | text put before the input |",
        "|---|---|",
        *[f"| `{name}` | {json.dumps(text, ensure_ascii=False)} |" for name, text in prompts.items()],
        "",
        "## Recipe",
        "",
        f"- base model: `{base}`" + (f", sha256 `{provenance['model_sha256']}`" if provenance.get("model_sha256")
                                     else "") + (f"; adapter recipe `{recipe}`" if recipe else ""),
        f"- attention: {'bidirectional (`is_causal: false` in config.json)' if encoder.bidirectional else 'causal'}",
        f"- pooling: `{config.pooling_mode}`; max_length {config.max_length}, doc_max_length "
        f"{config.doc_max_length}, skip_instruction {str(config.skip_instruction).lower()} (`llm2vec_config.json`)",
        f"- sentence-transformers max_seq_length: {max_seq_length}",
        f"- encoder fingerprint: `{encoder.fingerprint()}`",
        "",
    ]
    records = adapter_records(encoder)
    if records:
        lines += ["| adapter | stage | sha256 | training data sha256 | steps x batch x tokens | learning rate | LoRA r / alpha |",
                  "|---|---|---|---|---|---|---|"]
        for record in records:
            train, origin = record.get("config") or {}, record.get("provenance") or {}
            path = record["path"]
            lines.append(
                f"| {path.name if path else '?'} | {train.get('stage', '?')} | `{record['sha256'][:16]}...` | "
                f"{'`' + origin['data_sha256'] + '`' if origin.get('data_sha256') else '?'} | "
                f"{origin.get('steps', train.get('max_steps', '?'))} x {train.get('batch_size', '?')} x "
                f"{train.get('max_length', '?')} | {train.get('learning_rate', '?')} | "
                f"{train.get('lora_r', '?')} / {train.get('lora_alpha', '?')} |"
            )
        lines.append("")
    lines += _quality_section(quality)
    lines += _differences(encoder)
    return "\n".join(lines) + "\n"


def _quality_section(quality: Sequence[Mapping[str, Any]]) -> list[str]:
    if not quality:
        return ["## Quality", "", "No benchmark run of this exact encoder (same fingerprint) is on record.", ""]
    lines = ["## Quality", "",
             f"NDCG@10 / Recall@100 on reduced BEIR corpora, Spearman on STS (`{quality[0].get('command')}`, "
             f"{quality[0]['source']}):", "",
             "| configuration | " + " | ".join(f"{d} NDCG@10 / R@100" for d in _DATASETS) + " | STS-B | SICK-R |",
             "|---|" + "---|" * (len(_DATASETS) + 2)]
    for row in quality:
        cells = [f"{row[d]['ndcg@10']:.3f} / {row[d]['recall@100']:.3f}" if row.get(d) else "-" for d in _DATASETS]
        sts = [f"{row[k]:.3f}" if isinstance(row.get(k), (int, float)) else "-" for k in ("stsb", "sickr")]
        lines.append(f"| {row.get('name')} ({row.get('model')}) | " + " | ".join(cells + sts) + " |")
    return lines + [""]


def _differences(encoder: "LLM2VecEncoder") -> list[str]:
    lines = [
        "## sentence-transformers vs LLM2VecEncoder",
        "",
        "The same weights, attention, tokens and pooled positions, so the vectors agree (cosine >= 0.9999 in",
        "llm2vec-retriever's tests) except where sentence-transformers cannot follow the encoder:",
        "",
        "- Texts written entirely in capitals (two or more capitalised words, no lowercase letter):"
        + (" `LLM2VecEncoder` lower-cases them first; lower-case such texts before `model.encode`."
           if encoder.format.fold_all_caps else " kept as they are by this encoder too."),
        f"- Texts over doc_max_length ({encoder.config.doc_max_length}) tokens: `LLM2VecEncoder` cuts them on a word "
        "boundary, sentence-transformers at max_seq_length tokens.",
        "- Queries whose first character the tokenizer does not merge with the separating space (in",
        "  byte-level vocabularies: a digit, tab or newline): sentence-transformers also pools that space.",
    ]
    if encoder.bidirectional and not hasattr(encoder.model.config, "use_bidirectional_attention"):
        lines.append("- Load it with transformers' default `sdpa` (or `eager`) attention: `flash_attention_2` reads")
        lines.append(f"  the attention layers' own causal flag, which config.json cannot switch for "
                     f"{encoder.model.config.model_type}, and would attend causally.")
    if adds_bos(encoder.tokenizer) and encoder.config.pooling_mode == "mean" and encoder.config.skip_instruction:
        lines.append("- Documents (no prompt): sentence-transformers also averages the BOS token's state, which")
        lines.append("  `LLM2VecEncoder` leaves out; queries with a prompt pool exactly the same tokens.")
    return lines


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
