"""Shared by the benchmarks: where results go, what machine ran them, and how a result is written.

Every result file is one JSON object with at least `benchmark`, `date`, `command` and `machine`,
so `benchmarks/report.py` can name the command, machine and date under every table and plot.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data"


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni", "fma")


def cpu_flags() -> list[str]:
    """The CPU flags that decide matmul speed (from /proc/cpuinfo; empty where it is unreadable)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(flags.split(":", 1)[1].split())
    return [flag for flag in CPU_FLAGS if flag in present]


def machine_info() -> dict[str, Any]:
    """Platform, CPU, thread count, torch version and load average, for the result header."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(), "load_average": list(os.getloadavg())}
    try:
        import torch

        info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                    cpu_capability=torch.backends.cpu.get_cpu_capability(),
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and (max - min) / median of a list of timings, with the timings themselves."""
    median = statistics.median(values)
    return {"values": [round(v, 3) for v in values], "median": round(median, 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "relative_spread": round((max(values) - min(values)) / median, 3)}


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file (blank lines skipped), the first `limit` when given."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def files_sha256(*paths: str | Path) -> str:
    """One SHA-256 over the bytes of `paths` (in order): identifies the exact data a result used."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def result_path(name: str, output: str | Path | None = None) -> Path:
    """Where `write_result(name, ..., output)` writes."""
    return Path(output) if output else RESULTS / f"{name}.json"


def run_header() -> dict[str, Any]:
    """This run's date, command line and machine, as every result records them."""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
            "machine": machine_info()}


def write_result(name: str, payload: dict[str, Any], output: str | Path | None = None) -> Path:
    """Write `payload` with the standard header (benchmark, date, command, machine) as JSON."""
    path = result_path(name, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"benchmark": name, **run_header()}
    path.write_text(json.dumps({**header, **payload}, indent=2) + "\n", encoding="utf-8")
    return path
