"""Row-by-row parity of `LLM2VecEncoder` with the reference `llm2vec` 0.2.3 library.

    .venv/bin/python benchmarks/reference_parity.py --quick   # tiny random models, < 2 minutes
    .venv/bin/python benchmarks/reference_parity.py           # adds the real SmolLM2-135M

Same weights on both sides (the reference reads a symlinked copy of each model directory, see
`_reference.prepare_model_dir`); for every model, attention (bidirectional / causal) and
pooling (`mean`, `weighted_mean`, `last_token`) the same inputs are encoded at batch sizes 1
and 32, without and with an instruction: plain English, unicode, code, and texts longer than
`doc_max_length`/`max_length`. A case passes when every row has cosine >= 0.9999.

Reference quirks we deliberately do not copy, hence never compared for equality:

| quirk (reference 0.2.3, transformers 4.44)                | ours                                       |
|-----------------------------------------------------------|--------------------------------------------|
| `eos_token` pooling appends the literal " </s>" for any   | appends the tokenizer's own EOS id         |
| Llama/Mistral tokenizer, whatever its EOS token           |                                            |
| `bos_token` pooling crashes when the tokenizer adds no BOS| prepends the BOS itself                    |
| `mean` over an empty text averages the padding            | empty / whitespace texts are an InputError |
| a whitespace-only instruction crashes                     | treated as no instruction                  |
| when instruction + text exceed `max_length`, the pooling  | pools only the surviving text tokens (by   |
| mask (last N tokens, N = tokens of the text alone) spills | character offsets)                         |
| into the instruction                                      |                                            |
| byte-level BPE merges the space before the text into its  | pools every token holding text characters  |
| first token (" 東" = 3 tokens, "東" alone = 2): the last N | (one more token than the reference)        |
| tokens miss one token of the text                         |                                            |
| `Qwen2BiModel` is causal: transformers 4.44's Qwen2 SDPA  | bidirectional (so qwen2 is compared only   |
| path ignores the `is_causal=False` it sets                | causally; bidirectional is reported only)  |

Inputs where the reference's mask (last N tokens) and ours (character offsets) differ are
detected from token counts and reported apart ("[quirk]" rows, with the size of the gap).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _reference import (  # noqa: E402
    ROOT,
    prepare_adapter_dir,
    prepare_model_dir,
    reference_lora_fields,
    row_cosines,
    run_reference,
    write_inputs,
)

THRESHOLD = 0.9999
POOLINGS = ("mean", "weighted_mean", "last_token")
BATCH_SIZES = (1, 32)
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
RESULTS = ROOT / "benchmarks" / "results"

INSTRUCTION = "Retrieve a passage:"
LONG_INSTRUCTION = ("Given a scientific claim made in a question, retrieve the abstracts and documents that "
                    "support or refute the claim, and rank every one of them by relevance to the claim, "
                    "preferring recent peer reviewed studies with large samples over small case reports")

TEXTS: dict[str, list[str]] = {
    "plain": [
        "The quick brown fox jumps over the lazy dog.",
        "Retrieval augmented generation needs a good text encoder.",
        "Scientific claims are supported or refuted by abstracts.",
        "a",
    ],
    "unicode": [
        "Héllo wörld — ünïcode façade, naïve café.",
        "東京は日本の首都です。",
        "Москва — столица России.",
        "Emoji 🚀🔥 and math ∑ x² ≤ ∞ ½",
        "  leading and trailing spaces  ",
    ],
    "code": [
        "def encode(texts):\n    return model(texts)  # some code",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "SELECT title, text FROM passages WHERE id IN (1, 2, 3);",
        '{"key": [1, 2, {"nested": null}], "tab":\t"x"}',
    ],
}


@dataclass(frozen=True)
class ModelCase:
    """One model to compare: our directory (+ adapter) and its reference-readable copy."""

    name: str
    ours: str
    reference: str
    max_length: int
    doc_max_length: int
    adapters: tuple[str, ...] = ()
    reference_adapter: str | None = None
    reference_bidirectional_is_causal: bool = False


@dataclass
class CaseResult:
    """Min cosine of one (model, attention, pooling, instruction, batch size) case."""

    model: str
    attention: str
    pooling: str
    instruction: str
    batch_size: int
    min_cosine: float
    n: int
    by_kind: dict[str, float] = field(default_factory=dict)
    asserted: bool = True
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.asserted or self.min_cosine >= THRESHOLD


def scifact_passages(corpus: Path, n: int) -> list[str]:
    """`n` real passages (title + text); the long ones exceed every max_length used here."""
    out = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            out.append(f"{row['title']} {row['text']}".strip())
            if len(out) == n:
                break
    return out


def input_sets(scifact: int, corpus: Path = DEFAULT_CORPUS) -> list[tuple[str, str]]:
    """(kind, text) for every input; "long" texts exceed max_length tokens."""
    items = [(kind, text) for kind, texts in TEXTS.items() for text in texts]
    long_texts = [
        " ".join(TEXTS["plain"][:3]) * 8,
        "Héllo wörld — ünïcode façade, 東京, Москва. " * 20,
        "def f(x):\n    return [i * x for i in range(10)]  # code\n" * 12,
    ]
    long_texts += scifact_passages(corpus, scifact) if corpus.is_file() else []
    items += [("long", text) for text in long_texts]
    return items


def build_tiny_models(workdir: Path, archs: Sequence[str]) -> list[ModelCase]:
    """Tiny random models (tests/tiny_models.py) plus a random LoRA adapter on the llama one."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_model_dir

    cases = []
    for arch in archs:
        ours = build_model_dir(workdir / arch, arch, adds_bos=arch != "qwen2")
        ref = prepare_model_dir(ours, workdir / f"ref-{arch}")
        cases.append(ModelCase(f"tiny-{arch}" + ("" if arch != "qwen2" else " (no BOS)"), str(ours), str(ref), 64, 48,
                               reference_bidirectional_is_causal=arch == "qwen2"))
    if "llama" in archs:
        adapter = make_lora_adapter(workdir / "llama", workdir / "lora-llama")
        ref_adapter = prepare_adapter_dir(adapter, workdir / "ref-lora-llama", reference_lora_fields())
        base = next(c for c in cases if c.name == "tiny-llama")
        cases.append(ModelCase("tiny-llama + LoRA", base.ours, base.reference, 64, 48, (str(adapter),),
                               str(ref_adapter)))
    return cases


def make_lora_adapter(model_dir: Path, target: Path, seed: int = 1) -> Path:
    """A random (non-zero) LoRA adapter on all linear layers, saved by our venv's peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.3)
    model.save_pretrained(target)
    return target


def smollm2_case(workdir: Path) -> ModelCase:
    from indexer.llm2vec import resolve_model

    ours = resolve_model("smollm2-135m").location
    return ModelCase("SmolLM2-135M", ours, str(prepare_model_dir(ours, workdir / "ref-smollm2")), 128, 96)


def overflowing_instruction(tokenizer: Any, case: ModelCase) -> str:
    """The shortest prefix of LONG_INSTRUCTION that pushes texts near doc_max_length over max_length.

    It takes max_length - doc_max_length + 8 tokens, so a text cut to doc_max_length loses its
    last ~8 tokens to truncation while short texts still fit (and stay asserted).
    """
    words = LONG_INSTRUCTION.split()
    need = case.max_length - case.doc_max_length + 8
    for n in range(1, len(words) + 1):
        candidate = " ".join(words[:n])
        if len(tokenizer(candidate, add_special_tokens=False)["input_ids"]) >= need:
            return candidate
    raise ValueError(f"LONG_INSTRUCTION has fewer than {need} tokens for {case.name}")


def reference_mask_gap(tokenizer: Any, case: ModelCase, instruction: str, text: str) -> tuple[bool, int]:
    """(does the reference pool other tokens than ours?, how many tokens the two masks differ by).

    The reference pools the last N tokens, N = tokens of the text tokenized alone; we pool the
    tokens whose characters overlap the text. They differ when "instruction text" exceeds
    max_length (the reference then pools instruction tokens) or when the space before the text
    merges with its first bytes (byte-level BPE: " 東" is 3 tokens where "東" alone is 2).
    """
    from indexer.llm2vec.tokenization import PromptFormat, truncate_words

    fmt = PromptFormat(max_length=case.max_length, doc_max_length=case.doc_max_length)
    text = truncate_words([text], tokenizer, fmt)[0]
    full = tokenizer(f"{instruction} {text}", add_special_tokens=True, truncation=True,
                     max_length=case.max_length, return_offsets_mapping=True)
    alone = len(tokenizer(text, add_special_tokens=False, truncation=True, max_length=case.max_length)["input_ids"])
    start = len(instruction) + 1
    ours = sum(1 for begin, end in full["offset_mapping"] if end > begin and end > start)
    return ours != alone, abs(alone - ours)


def compare(cases: list[ModelCase], workdir: Path, scifact: int, threads: int = 2,
            corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    """Encode everything with the reference (one subprocess) and with ours; min cosines per case."""
    import torch
    from transformers import AutoTokenizer

    from indexer.llm2vec import LLM2VecEncoder

    torch.set_num_threads(threads)
    items = input_sets(scifact, corpus)
    kinds = [kind for kind, _ in items]
    texts = [text for _, text in items]
    groups_of: dict[str, dict[str, list[tuple[str | None, str]]]] = {}
    for case in cases:
        long_instruction = overflowing_instruction(AutoTokenizer.from_pretrained(case.ours), case)
        groups_of[case.name] = {
            "none": [(None, t) for t in texts],
            "short": [(INSTRUCTION, t) for t in texts],
            "long": [(long_instruction, t) for t in texts],
        }

    jobs: list[dict[str, Any]] = []
    reference_out: dict[tuple[str, bool, str, str, int], Path] = {}
    for c, case in enumerate(cases):
        groups = groups_of[case.name]
        for name, pairs in groups.items():
            write_inputs(workdir / f"inputs-{c}-{name}.jsonl", pairs)
        for bidirectional in (True, False):
            for pooling in POOLINGS:
                runs = []
                for group in groups:
                    for bs in BATCH_SIZES:
                        out = workdir / f"ref-{len(reference_out)}.npy"
                        runs.append({"inputs": str(workdir / f"inputs-{c}-{group}.jsonl"), "batch_size": bs,
                                     "output": str(out)})
                        reference_out[(case.name, bidirectional, pooling, group, bs)] = out
                jobs.append({"model": case.reference, "adapter": case.reference_adapter,
                             "bidirectional": bidirectional, "pooling_mode": pooling, "max_length": case.max_length,
                             "doc_max_length": case.doc_max_length, "runs": runs})
    start = time.perf_counter()
    run_reference({"threads": threads, "jobs": jobs})
    reference_s = time.perf_counter() - start

    start = time.perf_counter()
    results: list[CaseResult] = []
    ours_rows: dict[tuple[str, bool, str, str, int], np.ndarray] = {}
    for case in cases:
        tokenizer = AutoTokenizer.from_pretrained(case.ours)
        groups = groups_of[case.name]
        spill = {g: [reference_mask_gap(tokenizer, case, instr, t) if instr else (False, 0) for instr, t in pairs]
                 for g, pairs in groups.items()}
        for bidirectional in (True, False):
            for pooling in POOLINGS:
                encoder = LLM2VecEncoder.from_pretrained(
                    case.ours, list(case.adapters), bidirectional=bidirectional, pooling=pooling,
                    max_length=case.max_length, doc_max_length=case.doc_max_length, dtype="float32", device="cpu")
                for group, pairs in groups.items():
                    for bs in BATCH_SIZES:
                        key = (case.name, bidirectional, pooling, group, bs)
                        ours = encoder.encode([[i or "", t] for i, t in pairs], batch_size=bs)
                        ours_rows[key] = ours
                        cos = row_cosines(ours, np.load(reference_out[key]))
                        results.extend(summarise(case, bidirectional, pooling, group, bs, cos, kinds, spill[group]))
    ours_s = time.perf_counter() - start
    return {"results": results, "sanity": sanity_checks(cases, ours_rows, reference_out), "reference_s": reference_s,
            "ours_s": ours_s, "n_inputs": len(items)}


def sanity_checks(cases: list[ModelCase], ours: dict[tuple, np.ndarray], reference: dict[tuple, Path]) -> dict[str, float]:
    """Min cosines that must be well below 1 (the switch works) or exactly 1 (the quirk is real)."""
    checks = {}
    for case in cases:
        bi, causal = ((case.name, b, "mean", "none", 32) for b in (True, False))
        checks[f"{case.name}: ours bidirectional vs ours causal (< 1)"] = float(row_cosines(ours[bi], ours[causal]).min())
        if case.adapters:
            base = next(c for c in cases if c.ours == case.ours and not c.adapters)
            checks[f"{case.name}: ours with vs without adapter (< 1)"] = float(
                row_cosines(ours[bi], ours[(base.name,) + bi[1:]]).min())
        if case.reference_bidirectional_is_causal:
            checks[f"{case.name}: reference 'bidirectional' vs ours causal (= 1: the reference is causal)"] = float(
                row_cosines(np.load(reference[bi]), ours[causal]).min())
    return checks


def summarise(case: ModelCase, bidirectional: bool, pooling: str, group: str, bs: int, cos: np.ndarray,
              kinds: list[str], spill: list[tuple[bool, int]]) -> list[CaseResult]:
    """Split one run's cosines into the asserted case and the reference-quirk rows."""
    attention = "bidirectional" if bidirectional else "causal"
    instruction = {"none": "no", "short": "short", "long": "long"}[group]
    quirk_rows = np.array([over for over, _ in spill])
    normal = ~quirk_rows
    out = []
    if case.reference_bidirectional_is_causal and bidirectional:
        return [CaseResult(case.name, attention, pooling, instruction, bs, float(cos.min()), len(cos), asserted=False,
                           note="reference Qwen2BiModel is causal under transformers 4.44")]
    if normal.any():
        by_kind = {k: float(cos[[i for i in range(len(cos)) if kinds[i] == k and normal[i]]].min())
                   for k in dict.fromkeys(kinds) if any(kinds[i] == k and normal[i] for i in range(len(cos)))}
        out.append(CaseResult(case.name, attention, pooling, instruction, bs, float(cos[normal].min()),
                              int(normal.sum()), by_kind))
    if quirk_rows.any():
        spilled = [n for over, n in spill if over]
        out.append(CaseResult(case.name, attention, pooling, instruction + " [quirk]", bs, float(cos[quirk_rows].min()),
                              int(quirk_rows.sum()), asserted=False,
                              note=f"reference pooling mask differs from ours by {min(spilled)}-{max(spilled)} tokens "
                                   "(instruction spill over max_length, or a space merged into the text's first token)"))
    return out


def table(results: list[CaseResult]) -> str:
    """One row per (model, attention, pooling): min cosine per instruction setting over bs 1 and 32."""
    columns = ("no", "short", "long", "short [quirk]", "long [quirk]")
    rows: dict[tuple[str, str, str], dict[str, list[CaseResult]]] = {}
    for r in results:
        rows.setdefault((r.model, r.attention, r.pooling), {}).setdefault(r.instruction, []).append(r)
    lines = ["| model | attention | pooling | no instruction | short instruction | long instruction "
             "| short instr., reference mask differs (quirk, not asserted) | long instr., reference mask differs "
             "(quirk, not asserted) | status |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, attention, pooling), cells in rows.items():
        values = [f"{min(r.min_cosine for r in cells[c]):.6f}" if c in cells else "-" for c in columns]
        asserted = [r for rs in cells.values() for r in rs if r.asserted]
        if asserted:
            status = "PASS" if all(r.passed for r in asserted) else "FAIL"
        else:
            status = "not asserted: " + next(r.note for rs in cells.values() for r in rs)
        lines.append(f"| {model} | {attention} | {pooling} | {' | '.join(values)} | {status} |")
    return "\n".join(lines)


def kind_table(results: list[CaseResult]) -> str:
    """Min cosine per text kind and model over all asserted cases."""
    kinds = ("plain", "unicode", "code", "long")
    models = list(dict.fromkeys(r.model for r in results))
    lines = ["| model | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for model in models:
        mins = [min((r.by_kind[k] for r in results if r.model == model and r.asserted and k in r.by_kind),
                    default=float("nan")) for k in kinds]
        lines.append(f"| {model} | " + " | ".join(f"{m:.6f}" for m in mins) + " |")
    return "\n".join(lines)


def run_parity(quick: bool, workdir: Path, archs: Sequence[str] = ("llama", "qwen2", "mistral", "gemma"),
               scifact: int | None = None, threads: int | None = None,
               corpus: Path = DEFAULT_CORPUS) -> dict[str, Any]:
    """Build the models and compare; tiny models run on 1 thread (more would only contend)."""
    cases = build_tiny_models(workdir, archs)
    if not quick:
        cases.append(smollm2_case(workdir))
    return compare(cases, workdir, scifact if scifact is not None else (4 if quick else 12),
                   threads=threads or (1 if quick else 2), corpus=corpus)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="BEIR corpus.jsonl with real passages [default: %(default)s]")
    parser.add_argument("--quick", action="store_true", help="tiny random models only (< 2 minutes)")
    parser.add_argument("--scifact", type=int, help="real scifact passages among the inputs (default 4 quick / 12)")
    parser.add_argument("--threads", type=int, help="torch threads on both sides (default 1 quick / 2)")
    parser.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/reference_parity[_quick].json)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="l2v-parity-") as tmp:
        outcome = run_parity(args.quick, Path(tmp), scifact=args.scifact, threads=args.threads,
                             corpus=args.corpus)
    results: list[CaseResult] = outcome["results"]
    print(table(results))
    print("\nmin cosine by text kind (asserted cases, both batch sizes):\n" + kind_table(results))
    print("\nsanity checks (mean pooling, no instruction, batch 32):")
    for name, value in outcome["sanity"].items():
        print(f"  {name}: {value:.6f}")
    failed = [r for r in results if not r.passed]
    elapsed = time.perf_counter() - start
    print(f"\n{len(results) - len(failed)}/{len(results)} cases pass (threshold {THRESHOLD}); "
          f"{elapsed:.0f}s (reference {outcome['reference_s']:.0f}s, ours {outcome['ours_s']:.0f}s)")
    output = args.output or RESULTS / f"reference_parity{'_quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()},
        "quick": args.quick,
        "threshold": THRESHOLD,
        "n_inputs": outcome["n_inputs"],
        "seconds": round(elapsed, 1),
        "sanity": outcome["sanity"],
        "cases": [{**r.__dict__, "passed": r.passed} for r in results],
    }, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
