"""Export an `LLM2VecEncoder` as a sentence-transformers model folder (no custom code).

The folder holds the merged weights (base + every adapter) as safetensors, a `config.json` that
switches bidirectional attention on the way transformers reads it (`is_causal: false`, and
`use_bidirectional_attention: true` for the Gemma configs that have the flag), the tokenizer with
LLM2Vec's left padding and pad token, `modules.json` (Transformer -> Pooling -> Normalize), the
task instructions as sentence-transformers `prompts`, `llm2vec_config.json` (so
`LLM2VecEncoder.from_pretrained(folder)` reads it back) and a model card.

LLM2Vec's "instruction attended but not pooled" is sentence-transformers' `Pooling(include_prompt=
False)`: the prompt is `"{instruction} "`, so prompt + text is the encoder's `"{instruction} {text}"`.
sentence-transformers counts the prompt's tokens by tokenizing it alone, and a lone trailing space
is a token of its own there while the joined text merges it into the first text token; the
exported tokenizer therefore maps each prompt, when it is the whole input, to its instruction
without the space (one anchored normalizer per prompt), which makes the count exact and leaves
every other input as it was. What sentence-transformers cannot express is refused with `ExportError`:
`weighted_mean` (it weights by position in the whole sequence, prompt included), `eos_token` and
`bos_token` pooling, chat-template wrapping and unverified architectures.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import secrets
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import LLM2VecError

if TYPE_CHECKING:
    from .encoder import LLM2VecEncoder

FORMATS = ("sentence-transformers",)
EXPORTABLE_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")
"""Architectures whose exported folder is checked against the encoder in the tests."""
ST_POOLING = {"mean": "mean", "last_token": "lasttoken"}
REFUSED_POOLING = {
    "weighted_mean": "sentence-transformers' weightedmean weights each token by its position in the whole "
                     "sequence, instruction (and BOS) included, while LLM2Vec weights the text tokens 1..n; "
                     "queries with an instruction would get other vectors",
    "eos_token": "LLM2Vec appends the tokenizer's EOS token to every input, which a sentence-transformers "
                 "folder cannot do without changing the tokenizer for every other use",
    "bos_token": "sentence-transformers' cls pooling with include_prompt=False picks the first text token, "
                 "not the BOS",
}
_ST_POOLING_KEYS = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
                    "mean_sqrt_len_tokens": "mean_sqrt_len_tokens", "weightedmean_tokens": "weightedmean",
                    "lasttoken": "lasttoken"}
"""The legacy `pooling_mode_*` keys of 1_Pooling/config.json and the modes they switch on."""
QUALITY_RESULTS = ("ablation.json", "ablation-quick.json")
"""Benchmark results (benchmarks/results/) searched for a row with the encoder's fingerprint."""
_RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
_PROBES = ("the answer to a question", "the answer ")
"""Checked through the exported tokenizer with every prompt. They start with a common word (in the
vocabularies we know, the separating space merges into it, as sentence-transformers' prompt length
assumes); the second ends with a space, which the exported tokenizer must keep."""


class ExportError(LLM2VecError):
    """The encoder cannot be exported to the requested format, or the target folder is in the way."""


def default_prompts() -> dict[str, str]:
    """sentence-transformers prompts: `query` (the default task's instruction) and one per task.

    Each prompt is `"{instruction} "` (the encoder's join); a task without an instruction gets "".
    """
    # The task registry lives in the retriever package of the same distribution.
    from retriever.instructions import DEFAULT_TASK, TASKS

    prompts = {"query": TASKS[DEFAULT_TASK].instruction}
    prompts.update({name: task.instruction for name, task in TASKS.items()})
    return {name: as_prompt(instruction) for name, instruction in prompts.items()}


def as_prompt(instruction: str | None) -> str:
    """The sentence-transformers prompt for an LLM2Vec instruction: the encoder joins with one space."""
    instruction = (instruction or "").strip()
    return f"{instruction} " if instruction else ""


def check_exportable(encoder: "LLM2VecEncoder") -> None:
    """Raise `ExportError` naming what a sentence-transformers folder cannot express."""
    pooling = encoder.config.pooling_mode
    if pooling in REFUSED_POOLING:
        raise ExportError(
            f"cannot export {pooling!r} pooling to sentence-transformers: {REFUSED_POOLING[pooling]}. "
            f"Exportable pooling modes: {', '.join(ST_POOLING)} (e.g. l2v export ... --pooling mean)"
        )
    model_type = encoder.model.config.model_type
    if model_type not in EXPORTABLE_MODEL_TYPES:
        raise ExportError(
            f"cannot export model type {model_type!r} to sentence-transformers: exported folders are verified "
            f"for {', '.join(EXPORTABLE_MODEL_TYPES)}"
        )
    if encoder.format.chat_template is not None:
        raise ExportError(
            "cannot export an encoder that wraps inputs in a chat template (prefix "
            f"{encoder.format.chat_template[0]!r}, suffix {encoder.format.chat_template[1]!r}): "
            "sentence-transformers prompts can add a prefix but no suffix"
        )


def export_sentence_transformers(
    encoder: "LLM2VecEncoder",
    directory: str | os.PathLike,
    *,
    prompts: Mapping[str, str] | None = None,
    normalize: bool = True,
    force: bool = False,
) -> Path:
    """Write `encoder` as a sentence-transformers folder at `directory`; returns the folder.

    `prompts` maps prompt names to instructions (default: `query` and every registered task).
    `normalize` appends a Normalize module (unit vectors, cosine = dot product). The folder is
    written next to `directory` and renamed into place, so a failure leaves nothing behind; an
    existing non-empty `directory` is replaced only with `force=True`.
    """
    check_exportable(encoder)
    target = Path(directory).expanduser().absolute()
    check_target(target, force=force)
    instructions = default_prompts() if prompts is None else {k: as_prompt(v) for k, v in prompts.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.exporting-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # (not mkdtemp: the folder keeps the umask's permissions once renamed)
    try:
        max_seq_length = _write_transformer(encoder, staging, instructions)
        check_tokenizer(encoder, staging, instructions)
        _write_modules(encoder, staging, instructions, normalize, max_seq_length)
        encoder.config.write(staging)
        from .st_model_card import model_card

        (staging / "README.md").write_text(
            model_card(encoder, instructions, normalize=normalize, max_seq_length=max_seq_length,
                       quality=find_quality(encoder.fingerprint())),
            encoding="utf-8",
        )
        _replace(target, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace(target: Path, staging: Path) -> None:
    """Rename `staging` to `target`; an existing `target` is moved aside first and removed after."""
    if not target.exists():
        staging.rename(target)
        return
    old = staging.with_name(staging.name + "-old")
    target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old)


def check_target(target: Path, *, force: bool) -> None:
    """Refuse a non-empty target without `force`, and never replace a folder that holds the cwd."""
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a directory")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not force:
        raise ExportError(f"{target} is not empty; pass --force (force=True) to replace it")
    cwd = Path.cwd().absolute()
    if target == cwd or target in cwd.parents or target == Path.home():
        raise ExportError(f"refusing to replace {target}: it holds the current directory or is the home directory")


def _write_transformer(encoder: "LLM2VecEncoder", staging: Path, prompts: Mapping[str, str]) -> int:
    """Merged weights, config.json and tokenizer; returns the max_seq_length for sentence-transformers."""
    model = encoder.model
    if hasattr(model, "merge_and_unload"):  # an unmerged PEFT adapter: merge a copy, keep the encoder's
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(staging)
    config = copy.deepcopy(model.config)
    config.is_causal = not encoder.bidirectional
    if encoder.bidirectional and hasattr(config, "use_bidirectional_attention"):
        # Gemma's own switch; Gemma 3 serialises its sliding window so that a reload keeps it.
        config.use_bidirectional_attention = True
    config.save_pretrained(staging)

    tokenizer = encoder.tokenizer
    tokenizer.save_pretrained(staging)
    specials = len(tokenizer("a")["input_ids"]) - len(tokenizer("a", add_special_tokens=False)["input_ids"])
    max_seq_length = min(encoder.config.max_length, encoder.config.doc_max_length + specials)
    _patch_tokenizer(staging, encoder, max_seq_length, prompts)
    return max_seq_length


def _patch_tokenizer(staging: Path, encoder: "LLM2VecEncoder", max_seq_length: int,
                     prompts: Mapping[str, str]) -> None:
    """Left padding, the encoder's pad token, the length cap, and (when the prompt is not pooled)
    the prompt normalizers that make sentence-transformers' prompt length exact."""
    from tokenizers import Regex, Tokenizer, normalizers

    tokenizer_config = staging / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    settings["padding_side"] = "left"
    settings["model_max_length"] = max_seq_length
    if encoder.tokenizer.pad_token is None:
        settings["pad_token"] = encoder.tokenizer.convert_ids_to_tokens(encoder.pad_token_id)
    tokenizer_config.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    if not encoder.config.skip_instruction:
        return
    tokenizer_file = staging / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ExportError(f"the tokenizer saved no tokenizer.json in {staging}; a fast tokenizer is needed")
    backend = Tokenizer.from_file(str(tokenizer_file))
    # "{instruction} " as the whole input becomes "{instruction}": only a prompt tokenized alone
    # (how sentence-transformers measures it) changes, never a prompt followed by a text.
    steps = [normalizers.Replace(Regex(r"\A" + re.escape(prompt[:-1]) + r" \z"), prompt[:-1])
             for prompt in dict.fromkeys(prompts.values()) if prompt]
    if not steps:
        return
    backend.normalizer = normalizers.Sequence(steps + ([backend.normalizer] if backend.normalizer else []))
    backend.save(str(tokenizer_file))
    # Model-specific classes (GemmaTokenizer, LlamaTokenizer) rebuild their normalizer in code;
    # the generic class loads tokenizer.json as written, in transformers 4 and 5 alike.
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer_config.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def st_prompt_length(tokenizer: Any, prompt: str) -> int:
    """The prompt length sentence-transformers masks: the prompt's tokens alone, less a trailing
    special token (as its `Transformer._get_prompt_length` does)."""
    ids = tokenizer(prompt)["input_ids"]
    return len(ids) - int(bool(ids) and ids[-1] in tokenizer.all_special_ids)


def check_tokenizer(encoder: "LLM2VecEncoder", folder: Path, prompts: Mapping[str, str]) -> None:
    """Check that sentence-transformers, loading `folder`'s tokenizer, feeds the model the encoder's
    token ids and pools the encoder's positions; `ExportError` when it cannot, a warning for the
    BOS that it pools in documents (mean pooling of a tokenizer that adds one)."""
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(folder)
    if exported.padding_side != "left" or exported.pad_token_id != encoder.pad_token_id:
        raise ExportError(f"the exported tokenizer pads on the {exported.padding_side} with id "
                          f"{exported.pad_token_id}; the encoder pads on the left with id {encoder.pad_token_id}")
    cases = [(None, "")] + [(prompt.strip(), prompt) for prompt in dict.fromkeys(prompts.values()) if prompt]
    bos_pooled = False
    for (instruction, prompt), probe in itertools.product(cases, _PROBES):
        item = encoder.tokenize([probe], [instruction])[0]
        ids = exported(prompt + probe)["input_ids"]
        if ids != item.input_ids:
            raise ExportError(f"the exported tokenizer gives other token ids than the encoder for {prompt + probe!r}; "
                              "this tokenizer cannot be exported")
        if encoder.config.pooling_mode != "mean" or not encoder.config.skip_instruction:
            continue  # last_token pools the last position, include_prompt=True pools every position
        start = st_prompt_length(exported, prompt) if prompt else 0
        pooled = [position >= start for position in range(len(ids))]
        if pooled == item.pool_mask:
            continue
        if not prompt and pooled[1:] == item.pool_mask[1:] and ids[0] == encoder.tokenizer.bos_token_id:
            bos_pooled = True
            continue
        first_text = item.pool_mask.index(True) if True in item.pool_mask else len(ids)
        raise ExportError(
            f"cannot export {encoder.config.pooling_mode} pooling with this tokenizer: for {prompt + probe!r} "
            f"sentence-transformers would leave out the first {start} tokens as the prompt, but the text starts at "
            f"token {first_text} (the tokenizer, loaded as {type(exported).__name__}, counts the prompt alone "
            "differently); last_token pooling exports exactly (--pooling last_token)")
    if bos_pooled:
        warnings.warn("sentence-transformers averages the BOS token's state into documents (no prompt), which "
                      "LLM2VecEncoder leaves out; document vectors differ slightly (see the model card)",
                      RuntimeWarning, stacklevel=3)


def _write_modules(encoder: "LLM2VecEncoder", staging: Path, prompts: Mapping[str, str], normalize: bool,
                   max_seq_length: int) -> None:
    """modules.json, the Transformer's and Pooling's configs, and config_sentence_transformers.json.

    Module types and keys use the names sentence-transformers has read since 2.x (and v5+ maps),
    so older releases and serving stacks that read these files load the folder too.
    """
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (staging / "2_Normalize").mkdir()
    _write_json(staging / "modules.json", modules)
    _write_json(staging / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    mode = ST_POOLING[encoder.config.pooling_mode]
    (staging / "1_Pooling").mkdir()
    _write_json(staging / "1_Pooling" / "config.json", {
        "word_embedding_dimension": encoder.dim,
        **{f"pooling_mode_{key}": name == mode for key, name in _ST_POOLING_KEYS.items()},
        "include_prompt": not encoder.config.skip_instruction,
    })
    _write_json(staging / "config_sentence_transformers.json", {
        "__version__": {name: _version(dist) for name, dist in (("llm2vec_retriever", "llm2vec-retriever"),
                                                                  ("transformers", "transformers"),
                                                                  ("pytorch", "torch"))},
        "prompts": dict(prompts),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def find_quality(fingerprint: str, results_dir: Path = _RESULTS_DIR) -> list[dict[str, Any]]:
    """Benchmark rows measured with this exact encoder (same fingerprint), plus the BM25 baseline row."""
    for name in QUALITY_RESULTS:
        path = results_dir / name
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows = [row for row in results.get("rows", []) if row.get("fingerprint") == fingerprint]
        if rows:
            baseline = [row for row in results["rows"] if row.get("name") == "bm25"]
            return [{**row, "source": f"benchmarks/results/{name}", "command": results.get("command")}
                    for row in rows + baseline]
    return []


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
