"""Render the stored benchmark results (benchmarks/results/*.json) as benchmarks/RESULTS.md plus PNG plots.

    .venv/bin/python benchmarks/report.py                                # results/ -> RESULTS.md, plots/
    .venv/bin/python benchmarks/report.py --results DIR --output X.md    # render another set of results

It measures nothing. Every table and figure names the command, machine and date of the result
it shows, taken from the file's header (`_common.write_result`); older files without one get a
command derived from their name and the date of the commit that added them. Where a speed
benchmark has both a full and a `--quick` result, the full one is shown. A missing result
renders as "not run yet: <command>".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
RETRIEVAL_DATASETS = ("scifact", "cacm", "npl")
OURS, BM25 = "llm2vec", "bm25"  # rows of beir-<dataset>.json: our default model and the lexical baseline
DEFAULT_MODE, BM25_STEMMED = "hybrid", "bm25-porter"  # the default search mode of Retriever; the stemmed baseline
SCALE_COMMAND = "python benchmarks/scale.py"
# per storage operation: label, unit, keys in our row, keys in LangChain's row (first present wins)
STORE_OPS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("bulk add, per document", "ms", ("bulk_add_per_doc_ms",), ("bulk_add_per_doc_ms",)),
    ("add one document", "ms", ("add_one_ms",), ("add_one_ms",)),
    ("upsert one document", "ms", ("upsert_one_ms",), ()),
    ("delete one document", "ms", ("delete_one_ms",), ("delete_one_ms",)),
    ("snapshot / save", "s", ("snapshot_s",), ("save_s",)),
    ("open, fresh process", "s", ("open_s",), ("open_s",)),
    ("first search after open", "s", ("first_search_s",), ("first_search_s",)),
    ("open + first search (older runs)", "s", ("open_plus_first_search_s",), ("open_plus_first_search_s",)),
    ("RSS growth after open", "MB", ("rss_mb_after_open",), ("rss_mb_after_open",)),
    ("RSS growth after first search", "MB", ("rss_mb_after_search", "rss_mb_after_first_search"),
     ("rss_mb_after_search", "rss_mb_after_first_search")),
    ("disk", "MB", ("disk_mb",), ("disk_mb",)),
)
# panels of the scaling plot: title, unit, keys in either store's row (older runs timed open + first search)
SCALING_PLOTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("add one document", "ms", ("add_one_ms",)),
    ("delete one document", "ms", ("delete_one_ms",)),
    ("upsert one document", "ms", ("upsert_one_ms",)),
    ("open (older runs: + first search)", "s", ("open_s", "open_plus_first_search_s")),
)


@dataclass(frozen=True)
class Result:
    """One result file: its path and parsed JSON."""

    path: Path
    data: dict[str, Any]

    @property
    def command(self) -> str:
        return self.data.get("command") or derived_command(self.path.stem)

    @cached_property
    def committed(self) -> str | None:
        """The day the file was first committed: the only date an older file without a header has."""
        return committed_date(self.path)

    @property
    def date(self) -> str:
        if self.data.get("date"):
            return str(self.data["date"])
        return f"not recorded (file committed {self.committed})" if self.committed else "not recorded"

    @property
    def day(self) -> str:
        """The run's day for a plot footer: its date, else the day its file was committed."""
        return str(self.data["date"])[:10] if self.data.get("date") else self.committed or "undated"

    @property
    def provenance(self) -> str:
        smoke = "**a --smoke run: its numbers mean nothing** · " if self.data.get("smoke") else ""
        return (f"{smoke}`{self.path.name}` · command: `{self.command}` · machine: {describe_machine(self.data.get('machine'))}"
                f" · date: {self.date}")


@dataclass(frozen=True)
class Context:
    """Where results are read and the report and its plots are written."""

    results: Path
    output: Path
    plots: Path

    def load(self, *names: str) -> Result | None:
        """The first of `names` present in the results folder."""
        for name in names:
            path = self.results / name
            if path.is_file():
                return Result(path, json.loads(path.read_text(encoding="utf-8")))
        return None

    def glob(self, pattern: str) -> list[Result]:
        return [result for path in sorted(self.results.glob(pattern)) if (result := self.load(path.name))]

    def figure(self, fig: plt.Figure, name: str, alt: str, sources: Sequence[Result]) -> list[str]:
        """Save `fig` as plots/<name>.png with its sources in a footer; markdown that shows it."""
        fig.text(0.005, 0.005, "source: " + "; ".join(f"{r.path.name} ({r.day})" for r in sources),
                 fontsize=6, color="gray")
        self.plots.mkdir(parents=True, exist_ok=True)
        path = self.plots / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.figure_link(name, alt)

    def figure_link(self, name: str, alt: str) -> list[str]:
        """Markdown that shows plots/<name>.png (empty when there is no such plot)."""
        path = self.plots / f"{name}.png"
        return [f"![{alt}]({os.path.relpath(path, self.output.parent)})", ""] if path.is_file() else []


def derived_command(stem: str) -> str:
    """The command of an older result file, from its name: encode_speed_quick -> encode_speed.py --quick."""
    scripts = sorted((p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_")), key=len, reverse=True)
    script = next((s for s in scripts if stem.startswith(s)), None)
    if script is None:
        return f"unknown (no benchmark script matches {stem}.json)"
    variant = stem[len(script):].lstrip("-_")
    suffix = " --quick" if variant == "quick" else f" (partial run: {variant})" if variant else ""
    return f"python benchmarks/{script}.py{suffix} [derived from the file name]"


def committed_date(path: Path) -> str | None:
    """The date of the commit that added `path`, or None outside git."""
    try:
        log = subprocess.run(["git", "log", "--diff-filter=A", "--format=%cs", "--", path.name], cwd=path.parent,
                             capture_output=True, text=True, check=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return log[-1] if log else None


def describe_machine(machine: dict[str, Any] | None) -> str:
    """A one-line machine summary from any of the header layouts the benchmarks have written."""
    if not machine:
        return "not recorded"
    parts = []
    cpus = machine.get("cpu_count", machine.get("cpus"))
    if cpus:
        parts.append(f"{cpus} CPUs" + (f" ({machine['cpu_capability']})" if machine.get("cpu_capability") else ""))
    elif machine.get("platform"):
        parts.append(machine["platform"])
    if machine.get("gpu"):
        parts.append(f"GPU {machine['gpu']}")
    elif "gpu" in machine:
        parts.append("no GPU")
    threads = machine.get("threads", machine.get("torch_threads"))
    if threads:
        parts.append(f"{threads} torch threads")
    if machine.get("fp32_matmul_peak_gflops"):
        parts.append(f"fp32 matmul peak {machine['fp32_matmul_peak_gflops']:.0f} GFLOP/s")
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    elif machine.get("python"):
        parts.append(f"python {machine['python']}")
    parts += load_note(machine)
    return ", ".join(parts)


def load_note(machine: dict[str, Any]) -> list[str]:
    """The 1-minute load average at the start and end of the run, where recorded (high load: noisy timings)."""
    before = machine.get("load_average_before")
    after = machine.get("load_average_after") or machine.get("load_average")
    if before and after:
        return [f"1-min load {before[0]:.1f} at start, {after[0]:.1f} at end"]
    return [f"1-min load {after[0]:.1f} at end"] if after else []


def num(value: Any, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def sources(results: Sequence[Result]) -> list[str]:
    return [f"- {r.provenance}" for r in results] + [""]


def not_run(*commands: str) -> list[str]:
    return ["_Not run yet: " + "; ".join(f"`{c}`" for c in commands) + "_", ""]


def unique(results: Iterable[Result]) -> list[Result]:
    """`results` without repeats (by path), in order."""
    return list({result.path: result for result in results}.values())


def first(row: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((row[k] for k in keys if row.get(k) is not None), None)


# ---------------------------------------------------------------- retrieval quality


BEIR_MODES = {"full": "full corpora", "quick": "quick (reduced corpora)"}


def beir_mode(result: Result) -> str:
    """full (beir-<dataset>.json, whole collection), quick (beir-<dataset>-quick.json) or reduced."""
    stem = result.path.stem
    if stem.endswith("-quick"):
        return "quick"
    protocol = result.data.get("protocol") or {}
    return "reduced" if stem.endswith("-reduced") or protocol.get("max_docs") or protocol.get("max_queries") else "full"


def beir_results(ctx: Context, mode: str) -> dict[str, Result]:
    """beir-<dataset>[-quick].json of one mode by dataset, the three retrieval datasets first."""
    found = {}
    for r in ctx.glob("beir-*.json"):
        name = r.path.stem.removeprefix("beir-").removesuffix("-quick")
        if beir_mode(r) == mode and r.data.get("dataset", name) == name:  # not a side run (beir-scifact-distill.json)
            found[name] = r
    order = [d for d in RETRIEVAL_DATASETS if d in found] + sorted(set(found) - set(RETRIEVAL_DATASETS))
    return {name: found[name] for name in order}


def beir_sets(ctx: Context) -> list[tuple[str, dict[str, Result]]]:
    """(label, results by dataset) for each mode that has results: full corpora first."""
    return [(label, found) for mode, label in BEIR_MODES.items() if (found := beir_results(ctx, mode))]


def rows_by_name(result: Result) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in result.data.get("rows", [])}


def beir_not_run() -> list[str]:
    return not_run(*(f"python benchmarks/beir.py --data ../shared/data/{d} --full" for d in RETRIEVAL_DATASETS))


def share(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """`ours` NDCG@10 as a percentage of `theirs`, or a dash."""
    if ours.get("ndcg@10") is None or not theirs.get("ndcg@10"):
        return "–"
    return f"{100 * ours['ndcg@10'] / theirs['ndcg@10']:.0f} %"


def headline(ctx: Context) -> list[str]:
    lines = ["## Headline: NDCG@10 of our default model and default search as a share of BM25's", ""]
    sets = beir_sets(ctx)
    if not sets:
        return lines + beir_not_run()
    label, beir = sets[0]  # full corpora when there are any
    lines += [f"On the {label}" + ("" if label == BEIR_MODES["full"] else "; no full-corpus result yet ("
                                   "`python benchmarks/beir.py --full --data ...`)") + ".", ""]
    rows = []
    for dataset, result in beir.items():
        named = rows_by_name(result)
        ours, default, bm25, stemmed = (named.get(name, {}) for name in (OURS, DEFAULT_MODE, BM25, BM25_STEMMED))
        rows.append([dataset, ours.get("model", "–"), num(ours.get("ndcg@10")), num(default.get("ndcg@10")),
                     num(bm25.get("ndcg@10")), num(stemmed.get("ndcg@10")), f"**{share(ours, bm25)}**",
                     f"**{share(default, bm25)}**", share(default, stemmed)])
    lines += [f"Dense is the `{OURS}` row of each `beir-<dataset>.json`, the default search (hybrid) the "
              f"`{DEFAULT_MODE}` row, BM25 the `{BM25}` row (bm25s, no stemming) and `{BM25_STEMMED}` the same "
              "with an English stemmer.", ""]
    return lines + table(["dataset", "our model", "NDCG@10 dense", "NDCG@10 default (hybrid)", "BM25",
                          "BM25 + stemmer", "dense / BM25", "default / BM25", "default / BM25 + stemmer"],
                         rows) + sources(list(beir.values()))


def quality(ctx: Context) -> list[str]:
    lines = ["## Retrieval quality (BEIR-style datasets)", ""]
    sets = beir_sets(ctx)
    if not sets:
        return lines + beir_not_run()
    for index, (label, beir) in enumerate(sets):
        lines += [f"### {label[0].upper()}{label[1:]}", ""]
        if label != BEIR_MODES["full"]:
            lines += ["Reduced corpora score higher than full ones for every system: compare systems within a "
                      "table, not across tables.", ""]
        for dataset, result in beir.items():
            partial = "" if result.data.get("complete", True) else " (partial: the run has not finished every system)"
            lines += [f"#### {dataset}{partial}", ""] + protocol_line(result.data.get("protocol"))
            lines += table(["row", "model", "NDCG@10", "Recall@100", "MRR@10", "seconds", "run (UTC)"],
                           ([row["name"], row.get("model", "–"), num(row.get("ndcg@10")), num(row.get("recall@100")),
                             num(row.get("mrr@10")), num(row.get("seconds", row.get("encode_s")), 1),
                             run_cell(row, result)]
                            for row in result.data.get("rows", [])))
            lines += [f"_{result.provenance}_", ""]
        lines += quality_plot(ctx, beir, "quality" if index == 0 else f"quality-{label.split()[0]}", label)
    return lines


def run_cell(row: dict[str, Any], result: Result) -> str:
    """When and on which CPU a row was scored (rows of one table may come from different runs)."""
    date = (row.get("date") or result.data.get("date") or "")[:16].replace("T", " ")
    flags = row.get("cpu_flags") or (result.data.get("machine") or {}).get("cpu_flags") or []
    simd = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    return f"{date} {simd}".strip() or "–"


def protocol_line(protocol: dict[str, Any] | None) -> list[str]:
    if not protocol:
        return []
    return ["Protocol: " + ", ".join(f"{k} {v}" for k, v in protocol.items() if k != "note")
            + (f". {protocol['note']}" if protocol.get("note") else ""), ""]


def quality_plot(ctx: Context, beir: dict[str, Result], name: str = "quality", label: str = "") -> list[str]:
    names = list(dict.fromkeys(row["name"] for r in beir.values() for row in r.data.get("rows", [])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (metric, title) in zip(axes, (("ndcg@10", "NDCG@10"), ("recall@100", "Recall@100")), strict=True):
        grouped_bars(ax, list(beir), names,
                     lambda dataset, name, m=metric: rows_by_name(beir[dataset]).get(name, {}).get(m))
        ax.set_title(title)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return [f"Per dataset and model, {label} (sources as in the tables above):", ""] + ctx.figure(
        fig, name, f"NDCG@10 and Recall@100 per dataset and model, {label}", list(beir.values()))


def grouped_bars(ax: plt.Axes, groups: list[str], series: list[str],
                 value: Callable[[str, str], float | None]) -> None:
    """One bar per (group, series); `value(group, series)` may be None (left blank)."""
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        heights = [value(group, name) for group in groups]
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [h if h is not None else math.nan for h in heights], width, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------- ablation


def ablation(ctx: Context) -> list[str]:
    lines = ["## Ablation: what each LLM2Vec step adds", ""]
    result = ctx.load("ablation.json", "ablation-quick.json")  # full when there is one
    if result is None:
        return lines + not_run("python benchmarks/ablation.py")
    rows = result.data.get("rows", [])
    datasets = list(dict.fromkeys(k for row in rows for k, v in row.items() if isinstance(v, dict)))
    headers = ["variant", "description"] + [f"{d} {m}" for d in datasets for m in ("NDCG@10", "R@100")] + [
        "STS-B", "SICK-R"]
    body = ([row["name"], row.get("description", "")]
            + [num((row.get(d) or {}).get(m)) for d in datasets for m in ("ndcg@10", "recall@100")]
            + [num(row.get("stsb")), num(row.get("sickr"))] for row in rows)
    lines += protocol_line(result.data.get("protocol")) + table(headers, body) + [f"_{result.provenance}_", ""]
    fig, ax = plt.subplots(figsize=(10, 4))
    by_name = {row["name"]: row for row in rows}
    grouped_bars(ax, datasets, list(by_name), lambda d, name: (by_name[name].get(d) or {}).get("ndcg@10"))
    ax.set_title("NDCG@10 per ablation variant")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return lines + ctx.figure(fig, "ablation", "NDCG@10 per ablation variant and dataset", [result])


def checkpoints_on_full_collections(ctx: Context, sets: Sequence[str]) -> list[str]:
    """The checkpoints of long runs also run on the full collections (results/beir-<set>-<tag>.json, a
    tag with "epoch" in it), dense and hybrid NDCG@10, beside the shipped default (beir-<set>.json)."""
    found: dict[str, dict[str, Result]] = {}
    for result in ctx.glob("beir-*epoch*.json"):
        dataset = result.data.get("dataset", "")
        if dataset in sets and beir_mode(result) == "full":
            found.setdefault(result.path.stem.removeprefix(f"beir-{dataset}-"), {})[dataset] = result
    if not found:
        return []
    default = beir_results(ctx, "full")
    by_step = sorted(found, key=lambda tag: (int(m.group(1)) if (m := re.search(r"epoch(\d+)", tag)) else 0, tag))
    candidates = {**{tag: found[tag] for tag in by_step}, "the shipped default": default}

    def cell(result: Result | None) -> str:
        rows = rows_by_name(result) if result else {}
        return " / ".join(num((rows.get(name) or {}).get("ndcg@10")) for name in ("llm2vec", "hybrid")) if rows else "–"

    body = [[tag, *(cell(by_set.get(d)) for d in sets)] for tag, by_set in candidates.items()]
    command = min(r.data.get("command", "") for by_set in found.values() for r in by_set.values())
    return (["Checkpoints of the epoch runs (a tag with \"epoch\" in it) on the **full** collections (all test "
             "queries and documents; NDCG@10, dense / hybrid; exported with `l2v train export`):", ""]
            + table(["checkpoint (results/beir-<set>-<tag>.json)", *sets], body)
            + [f"_command: `{command}`, the same for each set and tag_", ""])


def long_runs(ctx: Context) -> list[str]:
    """Each long training run (results/midway-*.json): its loss and its midway scores against step."""
    lines = ["## Long training runs, measured midway", ""]
    results = ctx.glob("midway-*.json")
    if not results:
        return lines + not_run("python benchmarks/midway.py")
    for result in results:
        data, reference = result.data, result.data["reference"]
        sets = [name for name in ("scifact", "cacm", "npl") if name in reference]
        lines += [f"`{data['run']}` ({data['max_steps']} steps): its newest checkpoint stacked on the adapters it "
                  f"trains on, as it is (cool-down 0) and cooled down over N more steps (`l2v train branch`), "
                  f"against the shipped `{reference['model']}`. {data['protocol']['metric']}; quick "
                  f"(reduced) corpora, {data['protocol']['chunk_tokens']}-token chunks, {data['protocol']['precision']}: "
                  "sets a recipe may be chosen on, not the reported tests.", ""]
        body = [[f"step {row['step']}", row.get("cooldown_steps", 0), f"{row['lr']:.2e}" if row.get("lr") else "–"] + [num(row[n]) for n in (*sets, "mean", "stsb_dev")]
                + [row["date"][:10]] for row in data["rows"]]
        body.append([f"reference: {reference['model']}", "", ""] + [num(reference[n]) for n in (*sets, "mean", "stsb_dev")]
                    + [reference["date"][:10]])
        lines += table(["checkpoint", "cool-down steps", "lr", *sets, "mean", "STS-B dev", "measured"], body) + [f"_{result.provenance}_", ""]
        name, alt = "midway-" + result.path.stem.removeprefix("midway-"), f"loss and quick-set NDCG@10 of {data['run']} against step"
        log = BENCHMARKS.parent / data["run"] / "train_log.jsonl"
        if not log.is_file():  # a run trained in another machine's ignored .cache: keep the plot drawn there
            lines += ctx.figure_link(name, alt)
            continue
        steps = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        losses = [s["loss"] for s in steps]
        loss = [sum(losses[i - 50:i]) / 50 for i in range(50, len(losses) + 1)]
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
        left.plot([s["step"] for s in steps][len(steps) - len(loss):], loss, color="tab:blue")
        left.set(xlabel="step", ylabel="loss (mean of 50 steps)", xlim=(0, data["max_steps"]), title="training loss")
        rate = left.twinx()
        rate.plot([s["step"] for s in steps], [s["lr"] for s in steps], color="gray", linestyle=":")
        rate.set_ylabel("learning rate", color="gray")
        as_is = [row for row in data["rows"] if not row.get("cooldown_steps")]
        cooled = [row for row in data["rows"] if row.get("cooldown_steps")]
        for colour, metric in zip(("tab:green", "tab:orange", "tab:purple", "black"), (*sets, "mean")):
            right.plot([row["step"] for row in as_is], [row[metric] for row in as_is], "o-", color=colour, label=metric)
            right.plot([row["step"] + row["cooldown_steps"] for row in cooled], [row[metric] for row in cooled], "*",
                       color=colour, markersize=11)
            right.axhline(reference[metric], color=colour, linestyle="--", linewidth=0.8)
        right.set(xlabel="step", ylabel="NDCG@10 (quick sets)", xlim=(0, data["max_steps"]),
                  title="checkpoints (dots), cooled down (stars), the shipped recipe (dashed)")
        right.legend(fontsize=8)
        lines += ctx.figure(fig, name, alt, [result])
    return lines + checkpoints_on_full_collections(ctx, RETRIEVAL_DATASETS)


def centering(ctx: Context) -> list[str]:
    """Dense NDCG@10 with the vectors as they are and centred by each estimate of their means
    (results/centering-<set>-<split>.json), a column per set and split."""
    results = ctx.glob("centering-*.json")
    if not results:
        return []
    columns = {f"{r.data['dataset']} ({r.data['split']})": {row["variant"]: row for row in r.data["rows"]}
               for r in results}
    variants = list(dict.fromkeys(v for rows in columns.values() for v in rows))
    body = [[variant, *(num((rows.get(variant) or {}).get("ndcg@10")) for rows in columns.values())]
            for variant in variants]
    return (["## Centring the vectors: dense NDCG@10 by the means removed", "",
             "`oracle` takes the query side's mean from the very queries scored, which a search engine never has; "
             "the other estimates are what could ship (see `benchmarks/centering.py`). Test splits are diagnosis "
             "only: a variant is chosen on a development split.", ""]
            + table(["variant", *columns], body) + sources(results))


# ---------------------------------------------------------------- parity and encoding speed


def parity(ctx: Context) -> list[str]:
    lines = ["## Parity with the reference llm2vec", ""]
    result = ctx.load("reference_parity.json", "reference_parity_quick.json")
    if result is None:
        return lines + not_run("python benchmarks/reference_parity.py --quick")
    cases = result.data.get("cases", [])
    poolings = list(dict.fromkeys(c["pooling"] for c in cases))
    groups = list(dict.fromkeys((c["model"], c["attention"]) for c in cases))
    rows = []
    for model, attention in groups:
        mine = [c for c in cases if (c["model"], c["attention"]) == (model, attention)]
        asserted = [c for c in mine if c.get("asserted", True)]
        mins = [min((c["min_cosine"] for c in asserted if c["pooling"] == p), default=None) for p in poolings]
        rows.append([model, attention, *(num(m, 6) for m in mins), sum(not c.get("asserted", True) for c in mine),
                     sum(not c.get("passed") for c in mine), len(mine)])
    lines += [f"Minimum row cosine to the reference per pooling over the asserted cases (threshold "
              f"{result.data.get('threshold')}); 'quirks' counts cases classified as reference quirks, not asserted.",
              ""]
    lines += table(["model", "attention", *poolings, "quirks", "failed", "cases"], rows)
    failed = [c for c in cases if not c.get("passed")]
    if failed:
        lines += ["Failed cases:", ""] + [
            f"- {c['model']}, {c['attention']}, {c['pooling']}, instruction {c['instruction']}, batch "
            f"{c['batch_size']}: {num(c['min_cosine'], 6)}" + (f" ({c['note']})" if c.get("note") else "")
            for c in failed] + [""]
    return lines + [f"_{result.provenance}_", ""]


def _speed_table(result: Result) -> list[str]:
    """One encode_speed result: its machine line and the ratio table."""
    cases = result.data.get("cases", {})
    rows = [[case, c.get("n"), f"{c['ours']['tokens_per_s']:.0f} ({c['ours']['pct_of_peak']:.0f} % of its "
             f"precision's peak)",
             f"{c['reference_fp32']['tokens_per_s']:.0f} ({c['reference_fp32']['pct_of_fp32_peak']:.0f} %)",
             f"**{times(c.get('speedup'))}**", times(c.get("target")), "yes" if c.get("meets_target") else "no",
             num(c.get("min_cosine_to_ours_fp32", c.get("min_cosine_to_reference")), 6)]
            for case, c in cases.items()]
    machine = result.data.get("machine", {})
    peaks = ", ".join(f"{name} {machine[key]} GFLOP/s" for name, key in (
        ("fp32", "fp32_matmul_peak_gflops"), ("bf16", "bf16_matmul_peak_gflops"), ("int8", "int8_matmul_peak_gflops"))
        if key in machine)
    lines = [f"**CPU flags: {' '.join(machine.get('cpu_flags', [])) or 'unknown'}.** Measured matmul peaks: {peaks}.", ""]
    return lines + table(["case", "texts", "ours tokens/s", "reference tokens/s", "ratio", "target", "met", "min cosine"],
                         rows) + [f"_{result.provenance}_", ""]


def encode_speed(ctx: Context) -> list[str]:
    lines = ["## Encoding throughput against the reference llm2vec", ""]
    results = ctx.glob("encode_speed*.json")
    if not results:
        return lines + not_run("python benchmarks/encode_speed.py --quick")
    lines += ["Both libraries in one run, same model and inputs; the ratio is ours / reference tokens per second "
              "(the bf16 and int8 cases: ours in that precision against the reference's fp32; their cosine is to "
              "our fp32 rows). One table per machine: the CPUs differ in what they run fast.", ""]
    for result in results:
        lines += _speed_table(result)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(results)
    names = sorted({name for result in results for name in result.data.get("cases", {})})
    for k, result in enumerate(results):
        cases = result.data.get("cases", {})
        flags = result.data.get("machine", {}).get("cpu_flags", [])
        label = "AVX512-BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else result.path.stem
        ax.bar([i + (k - (len(results) - 1) / 2) * width for i in range(len(names))],
               [cases.get(n, {}).get("speedup", math.nan) for n in names], width, label=f"ours / reference, {label}")
    targets = [(i, TARGET_BY_CASE[n]) for i, n in enumerate(names) if n in TARGET_BY_CASE]
    ax.hlines([t for _, t in targets], [i - 0.4 for i, _ in targets], [i + 0.4 for i, _ in targets],
              colors="tab:red", label="target")
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_ylabel("throughput ratio (tokens/s)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return lines + ctx.figure(fig, "encode_ratio", "encoding throughput ratio ours / reference per case and machine",
                              results)


TARGET_BY_CASE = {"passages_fp32": 1.3, "queries_fp32": 2.0, "passages_bf16": 2.5, "queries_bf16": 2.0, "passages_int8": 2.5,
                  "queries_int8": 2.0}
"""encode_speed.py's targets, for the plot when a case is missing from one machine's result."""


def precision_quality(ctx: Context) -> list[str]:
    lines = ["## int8 and bf16 against fp32: retrieval quality (quick sets)", ""]
    results = ctx.glob("precision-*-quick.json")
    if not results:
        return lines + not_run(*(f"python benchmarks/beir.py --data ../shared/data/{d} --quick --systems llm2vec,int8 "
                                 f"--output benchmarks/results/precision-{d}-quick.json" for d in RETRIEVAL_DATASETS))
    rows = []
    for result in results:
        by_name = rows_by_name(result)
        fp32 = by_name.get("llm2vec")
        machine = result.data.get("machine", {})
        flags = machine.get("cpu_flags") or [machine.get("cpu_capability", "unknown")]
        for precision in ("int8", "bf16"):
            other = by_name.get(precision)
            if fp32 and other:
                rows.append([result.data.get("dataset", result.path.stem), precision, " ".join(flags),
                             num(fp32["ndcg@10"]), num(other["ndcg@10"]), f"{other['ndcg@10'] - fp32['ndcg@10']:+.3f}",
                             f"{fp32['seconds']} / {other['seconds']}"])
    lines += ["Quick sets (reduced corpora: a quick run, not a full-collection figure); the same index and "
              "search code, documents and queries encoded at each precision. Bar: NDCG@10 within 0.01 of fp32.", ""]
    return lines + table(["dataset", "precision", "CPU flags", "fp32 NDCG@10", "NDCG@10", "difference",
                          "wall s, one run each, not a timing (fp32 / other)"], rows) + sources(results) + [""]


def startup(ctx: Context) -> list[str]:
    lines = ["## CLI start-up", ""]
    result = ctx.load("startup.json")
    if result is None:
        return lines + not_run("python benchmarks/startup.py demo-index")
    labels = {"help": "`l2v --help`", "stats": "`l2v index stats`",
              "search_onnx": "`l2v search` (ONNX query runtime, the default after `l2v index build`)",
              "search_torch": "`l2v search --runtime torch` (the torch model, as before)"}
    targets = result.data.get("targets", {})
    rows = [[label, num(result.data["seconds"][name]["median"]),
             f"{num(result.data['seconds'][name]['min'])}-{num(result.data['seconds'][name]['max'])}",
             num(targets.get(name)) if targets.get(name) is not None else ""]
            for name, label in labels.items()]
    lines += [f"Fresh processes, wall clock, medians of {result.data.get('pairs')} alternating rounds on "
              f"`{result.data.get('index')}`; both runtimes return the same hits. CPU flags: "
              f"{' '.join(result.data.get('machine', {}).get('cpu_flags', [])) or 'unknown'}.", ""]
    return lines + table(["command", "median s", "range s", "target s"], rows) + [f"_{result.provenance}_", ""]


def model_speed(ctx: Context) -> list[str]:
    lines = ["## Encode throughput of the candidate base models", ""]
    result = ctx.load("model_speed.json")
    if result is None:
        return lines + not_run("python benchmarks/model_speed.py --data ../shared/data/scifact")
    a, b = result.data["models"]
    rows = [[case, result.data["cases"][case]["texts"],
             f"{num(result.data['rows'][a][case]['texts_per_s'], 2)} ({result.data['rows'][a][case]['tokens']} tokens)",
             f"{num(result.data['rows'][b][case]['texts_per_s'], 2)} ({result.data['rows'][b][case]['tokens']} tokens)",
             f"**{times(ratio)}**", times(result.data.get("target"))]
            for case, ratio in result.data["ratio_b_over_a"].items()]
    lines += [f"`LLM2VecEncoder.encode` on the same SciFact texts, {result.data['precision']}, medians of "
              f"{result.data['pairs']} alternating rounds (adapters are merged at load, so `:base` times the "
              f"architecture). CPU flags: {' '.join(result.data.get('machine', {}).get('cpu_flags', [])) or 'unknown'}.",
              ""]
    return lines + table(["case", "texts", f"{a} texts/s", f"{b} texts/s", "B / A", "target"], rows) + [
        f"_{result.provenance}_", ""]


def build_speed(ctx: Context) -> list[str]:
    lines = ["## `l2v index build` against the bare encode of the same chunks", ""]
    results = ctx.glob("build_speed*.json")
    if not results:
        return lines + not_run("python benchmarks/build_speed.py --data ../shared/data/scifact")
    lines += ["Fresh processes, wall clock, A B A B: the build (parse, chunk, encode, SQLite and FAISS commits, "
              "keyword table) against a script that loads the encoder and encodes the chunks the build stored; "
              "medians over the rounds. A row per code version measured (its commit).", ""]
    rows = [[r.data.get("code", {}).get("commit", "–"), r.data["docs"], r.data["chunks"],
             num(r.data["docs_per_s"]["build"]), num(r.data["docs_per_s"]["bare"]),
             f"**{times(r.data['ratio'])}** ({', '.join(times(x) for x in r.data['ratio_per_round'])})",
             times(r.data.get("target")), ' '.join(r.data.get("machine", {}).get("cpu_flags", []))]
            for r in results]
    return lines + table(["code", "docs", "chunks", "build docs/s", "bare encode docs/s", "build / bare (rounds)",
                          "target", "CPU flags"], rows) + sources(results) + [""]


def chunk_speed(ctx: Context) -> list[str]:
    lines = ["## `l2v index build` at two chunk lengths", ""]
    result = ctx.load("chunk_speed.json")
    if result is None:
        return lines + not_run("python benchmarks/chunk_speed.py --data ../shared/data/scifact")
    data = result.data
    lines += [f"Fresh processes, wall clock, alternating: {data['docs']} SciFact documents built into a new "
              f"index at each chunk length ({data['model']}, {data['precision']}), medians of {data['pairs']} "
              f"rounds. CPU flags: {' '.join(data.get('machine', {}).get('cpu_flags', [])) or 'unknown'}.", ""]
    rows = [[n, data["chunks"][str(n)], num(data["seconds"][str(n)]["median"], 1), num(data["docs_per_s"][str(n)])]
            for n in data["chunk_tokens"]]
    return lines + table(["chunk tokens", "chunks", "build s", "docs/s"], rows) + [
        f"Second length over first, docs/s: **{times(data['ratio'])}** (rounds: "
        f"{', '.join(times(x) for x in data['ratio_per_round'])}).", "", f"_{result.provenance}_", ""]


# ---------------------------------------------------------------- indexing


def index_results(ctx: Context) -> tuple[Result | None, Result | None]:
    """The primary index_speed result (full over quick) and the other mode's, if any."""
    full, quick = ctx.load("index_speed.json"), ctx.load("index_speed-quick.json")
    return (full, quick) if full else (quick, None)


def indexing(ctx: Context) -> list[str]:
    lines = ["## Indexing", ""]
    primary, other = index_results(ctx)
    if primary is None:
        return lines + not_run("python benchmarks/index_speed.py --quick")
    build = primary.data.get("build")
    if build:
        lines += ["### Build (real encoder)", ""] + table(
            ["docs", "chunks", "seconds", "docs/s", "storage time / encoding time"],
            [[build["docs"], build["chunks"], num(build["seconds"], 1), num(build["docs_per_s"], 2),
              f"{100 * build['storage_overhead_vs_encoding']:.2f} %"]]) + [f"_{primary.provenance}_", ""]
    return lines + storage(ctx, primary, other) + opening(ctx) + ann(ctx, primary)


def storage_points(primary: Result, other: Result | None, extra: Sequence[Result]) -> list[tuple[dict[str, Any], Result]]:
    """(storage row, its file) per vector count, sorted; the primary run wins a size measured twice."""
    found: dict[int, tuple[dict[str, Any], Result]] = {}
    for result in [primary, *([other] if other else []), *extra]:
        rows = result.data.get("storage") or [result.data]
        for row in rows:
            if "ours" in row:
                found.setdefault(row["vectors"], (row, result))
    return [found[n] for n in sorted(found)]


def storage(ctx: Context, primary: Result, other: Result | None) -> list[str]:
    points = storage_points(primary, other, ctx.glob("index_speed-storage-*.json"))
    if not points:
        return []
    headers = ["operation"] + [f"{row['vectors']:,} vectors: ours / LangChain (ratio)" for row, _ in points]
    rows = []
    for label, unit, ours_keys, lc_keys in STORE_OPS:
        cells = [store_cell(first(row["ours"], ours_keys), first(row.get("langchain_faiss", {}), lc_keys), unit)
                 for row, _ in points]
        if any(cell != "–" for cell in cells):
            rows.append([label, *cells])
    lines = ["### Store operations against LangChain's FAISS store (synthetic vectors)", "",
             "Ratio = LangChain / ours (above 1: we are faster or smaller); each column comes from one run.", ""]
    lines += table(headers, rows) + sources(unique(result for _, result in points))
    return lines + scaling_plot(ctx, points)


def store_cell(ours: float | None, theirs: float | None, unit: str) -> str:
    digits = 1 if unit == "MB" else 2 if unit == "ms" else 3
    if ours is None and theirs is None:
        return "–"
    ratio = f" ({theirs / ours:.1f}x)" if ours and theirs else ""
    return f"{num(ours, digits)} / {num(theirs, digits)} {unit}{ratio}"


def scaling_plot(ctx: Context, points: list[tuple[dict[str, Any], Result]]) -> list[str]:
    fig, axes = plt.subplots(1, len(SCALING_PLOTS), figsize=(4 * len(SCALING_PLOTS), 3.5))
    for ax, (label, unit, keys) in zip(axes, SCALING_PLOTS, strict=True):
        for side, style in (("ours", "o-"), ("langchain_faiss", "s--")):
            xy = [(row["vectors"], first(row.get(side, {}), keys)) for row, _ in points]
            xy = [(x, y) for x, y in xy if y is not None]
            if xy:
                ax.plot(*zip(*xy), style, label="ours" if side == "ours" else "LangChain FAISS")
        ax.set(xscale="log", yscale="log", xlabel="vectors", ylabel=unit, title=label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return ctx.figure(fig, "store_scaling", "store operation time against index size, ours and LangChain",
                      unique(result for _, result in points))


def opening(ctx: Context) -> list[str]:
    results = ctx.glob("index_speed-open-*.json")
    if not results:
        return []
    rows = [[f"{r.data['vectors']:,}", r.data.get("factory", "–"), num(r.data.get("open_s")),
             num(r.data.get("rss_mb_after_open"), 1), num(r.data.get("first_search_s")),
             num(r.data.get("rss_mb_after_search"), 1), num(sum((r.data.get("disk_mb") or {}).values()), 1)]
            for r in results]
    return ["### Opening a large index (memory-mapped)", ""] + table(
        ["vectors", "factory", "open s", "RSS after open MB", "first search s", "RSS after search MB", "disk MB"],
        rows) + sources(results)


def ann(ctx: Context, primary: Result) -> list[str]:
    data = primary.data.get("ann")
    if not data:
        return []
    factories = {name: v for name, v in data["by_factory"].items() if "recall_at_10" in v}
    flat_ms = factories.get("Flat", {}).get("ms_per_query")
    rows = []
    for name, v in factories.items():
        default = ", ".join(f"{k} {x}" for k, x in (v.get("default") or {}).items() if x is not None) or "–"
        rows.append([name, default, num(v["recall_at_10"]), num(v["ms_per_query"], 3),
                     times(flat_ms / v["ms_per_query"]) if flat_ms else "–", num(v.get("build_s"), 2)])
    lc = data["by_factory"].get("langchain_faiss_flat")
    if lc:
        rows.append(["LangChain FAISS (flat)", lc.get("note", ""), "1.000 (exact)", num(lc["ms_per_query"], 3),
                     times(flat_ms / lc["ms_per_query"]) if flat_ms else "–", "–"])
    lines = [f"### Recall@10 against latency: Flat, HNSW, IVF-PQ ({data['vectors']:,} clustered synthetic vectors, "
             f"{data['queries']} queries)", "",
             "Recall against exact search; ms per query from one batched search; speed-up relative to our Flat.", ""]
    lines += table(["index", "search setting", "recall@10", "ms/query", "speed-up vs Flat", "build s"], rows)
    sweeps = [(name, p) for name, v in factories.items() for p in v.get("sweep", [])]
    if sweeps:
        lines += table(["index", "setting", "recall@10", "ms/query"],
                       ([name, f"{p['param']} {p['value']}", num(p["recall_at_10"]), num(p["ms_per_query"], 3)]
                        for name, p in sweeps))
    return lines + [f"_{primary.provenance}_", ""] + ann_plot(ctx, primary, factories, lc)


def ann_plot(ctx: Context, primary: Result, factories: dict[str, Any], lc: dict[str, Any] | None) -> list[str]:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, v in factories.items():
        curve = v.get("sweep") or []
        if curve:
            line, = ax.plot([p["ms_per_query"] for p in curve], [p["recall_at_10"] for p in curve], "o-", label=name)
            for p in curve:
                ax.annotate(str(p["value"]), (p["ms_per_query"], p["recall_at_10"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points", color=line.get_color())
        else:
            ax.plot([v["ms_per_query"]], [v["recall_at_10"]], "D", label=name)
    if lc:
        ax.plot([lc["ms_per_query"]], [1.0], "x", color="black", label="LangChain FAISS (flat, per call)")
    ax.set(xscale="log", xlabel="ms per query (log)", ylabel="recall@10", ylim=(0, 1.05),
           title="recall@10 against latency (labels: efSearch / nprobe)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ctx.figure(fig, "ann_recall_latency", "recall@10 against ms per query per index type", [primary])


# ---------------------------------------------------------------- queries and scale


def query_speed(ctx: Context) -> list[str]:
    lines = ["## Query latency (encode + search + hydrate)", ""]
    result = ctx.load("query_speed.json", "query_speed_quick.json")
    if result is None:
        return lines + not_run("python benchmarks/query_speed.py --quick")
    indexes = result.data.get("indexes", {})
    rows = [[name, f"{v['vectors']:,}", v.get("factory", "–"), p50_p99(v["encode"]), p50_p99(v["search_and_hydrate"]),
             p50_p99(v["end_to_end"]), f"**{times(v.get('p50_ratio_end_to_end_over_encode'))}**",
             num(v.get("batch", {}).get("queries_per_second"), 2)] for name, v in indexes.items()]
    lines += [f"One query at a time (k = {next(iter(indexes.values()), {}).get('k', '–')}); target: "
              f"{result.data.get('target', '–')}. Ratio = end-to-end p50 / bare encoding p50, same run.", ""]
    lines += table(["index", "vectors", "factory", "encode p50 / p99 ms", "search + hydrate p50 / p99 ms",
                    "end-to-end p50 / p99 ms", "ratio", "batch queries/s"], rows) + [f"_{result.provenance}_", ""]
    return lines + query_plot(ctx, result, indexes)


def p50_p99(stats: dict[str, float]) -> str:
    return f"{stats['p50_ms']:.1f} / {stats['p99_ms']:.1f}"


def query_plot(ctx: Context, result: Result, indexes: dict[str, Any]) -> list[str]:
    stages = ("encode", "search_and_hydrate", "end_to_end")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, percentile in zip(axes, ("p50_ms", "p99_ms"), strict=True):
        grouped_bars(ax, list(indexes), list(stages), lambda index, stage, p=percentile: indexes[index][stage][p])
        ax.set(yscale="log", title=percentile.replace("_ms", " (ms, log)"))
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ctx.figure(fig, "query_latency", "query latency percentiles per stage and index", [result])


def serve_load(ctx: Context) -> list[str]:
    lines = ["## Serving: `l2v serve` under load", ""]
    result = ctx.load("serve_load.json", "serve_load_quick.json")
    if result is None:
        return lines + not_run("python benchmarks/serve_load.py --quick")
    data = result.data
    idle, load = data["idle"], data["concurrent"]
    offline = load["offline_encode_batch32_queries_per_second"]
    rows = [["bare `encode` of one query (no server)", p50_p99(idle["bare_encode"]), "–", "–", "–", "–"]]
    rows += [[f"idle: one `POST /v1/{route}` at a time", p50_p99(idle[route]),
              f"**{times(idle[route].get('p50_ratio_over_bare_encode'))}**", "–", "–", idle[route]["errors"]]
             for route in ("embeddings", "search")]
    rows += [["offline `encode`, batch 32 (no server)", "–", "–", num(offline, 1), "–", "–"]]
    for route in ("embeddings", "search"):
        row = load[route]
        rate = f"{num(row['requests_per_second'], 1)} (**{times(row.get('throughput_ratio_over_offline_batch32'))}**)"
        rows.append([f"{row['clients']} clients: `POST /v1/{route}`", p50_p99(row), "–", rate,
                     num(row.get("mean_texts_per_forward"), 1), row["errors"]])
    targets = data.get("targets", {})
    lines += [f"A real `l2v serve` on loopback, {data.get('model')}, single short queries ({data.get('queries')}), "
              f"--max-batch {data.get('max_batch')}, --max-wait-ms {data.get('max_wait_ms')}. Targets: idle embeddings "
              f"p50 <= {targets.get('idle_p50_ratio_max')}x the bare encode; concurrent throughput >= "
              f"{targets.get('concurrent_throughput_ratio_min')}x offline batch-32 encoding; no errors. "
              f"Met: {', '.join(k for k, v in data.get('targets_met', {}).items() if v) or 'none'}.", ""]
    lines += table(["case", "p50 / p99 ms", "p50 / bare encode", "requests/s (/ offline)", "texts per forward",
                    "errors"], rows) + [f"_{result.provenance}_", ""]
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 3.5))
    cases = {"bare encode": idle["bare_encode"], "idle embeddings": idle["embeddings"], "idle search": idle["search"],
             "16 clients embeddings": load["embeddings"], "16 clients search": load["search"]}
    grouped_bars(latency, list(cases), ["p50_ms", "p99_ms"], lambda case, p: cases[case][p])
    latency.set(yscale="log", title="latency (ms, log)")
    plt.setp(latency.get_xticklabels(), rotation=20, ha="right", fontsize=7)
    latency.legend(fontsize=8)
    rates = {"offline encode\nbatch 32": offline, "embeddings": load["embeddings"]["requests_per_second"],
             "search": load["search"]["requests_per_second"]}
    throughput.bar(list(rates), list(rates.values()), color=["gray", "C0", "C1"])
    throughput.set(title="queries/s (16 clients)")
    throughput.grid(axis="y", alpha=0.3)
    return lines + ctx.figure(fig, "serve_load", "l2v serve latency and throughput against the bare encoder", [result])


def scale(ctx: Context) -> list[str]:
    lines = ["## Scaling out with Ray", ""]
    result = ctx.load("scale.json")
    if result is None:
        return lines + not_run(SCALE_COMMAND)
    overhead = result.data.get("overhead")
    if overhead:
        lines += ["Overhead of the Ray pipeline against a local run, same docs and model, one run:", ""]
        lines += table(["docs", "model", "local s", "Ray s", "Ray / local"],
                       [[overhead.get("docs"), overhead.get("model"), num(overhead.get("local_s"), 1),
                         num(overhead.get("ray_s"), 1), f"**{times(overhead.get('ratio'))}**"]])
    sizing = result.data.get("sizing") or []
    if sizing:
        keys = list(dict.fromkeys(k for row in sizing for k in row))
        lines += ["Sizing:", ""] + table(keys, ([cell(row.get(k)) for k in keys] for row in sizing))
    return lines + [f"_{result.provenance}_", ""]


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "–" if value is None else str(value)


# ---------------------------------------------------------------- assembly


def render(ctx: Context) -> str:
    intro = ["# Benchmark results", "",
             f"Generated by `python benchmarks/report.py` from the JSON in `{os.path.relpath(ctx.results, ctx.output.parent)}/`"
             " (`make bench` runs the quick suite, then this). Each table and figure names the command, machine and "
             "date of its result; ratios measured within one run are preferred over absolute times. Where a speed "
             "benchmark has a full and a `--quick` result, the full one is shown.", ""]
    sections = (headline, quality, ablation, long_runs, centering, model_speed, parity, encode_speed, precision_quality, startup, build_speed,
                chunk_speed, indexing, query_speed, serve_load, scale)
    return "\n".join(intro + [line for section in sections for line in guarded(section, ctx)]).rstrip() + "\n"


def guarded(section: Callable[[Context], list[str]], ctx: Context) -> list[str]:
    """The section's lines, or a note naming the error when a result file has an unexpected layout."""
    try:
        return section(ctx)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        print(f"report: section {section.__name__} failed: {error!r}", file=sys.stderr)
        plt.close("all")
        return [f"## {section.__name__}", "", f"_Could not render: {type(error).__name__}: {error}_", ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=BENCHMARKS / "results", help="folder of result JSON files")
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "RESULTS.md", help="markdown report to write")
    parser.add_argument("--plots", type=Path, help="folder for the PNG plots (default: plots/ next to --output)")
    args = parser.parse_args(argv)
    ctx = Context(args.results.resolve(), args.output.resolve(), (args.plots or args.output.parent / "plots").resolve())
    ctx.output.write_text(render(ctx), encoding="utf-8")
    print(f"wrote {ctx.output} and plots in {ctx.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
