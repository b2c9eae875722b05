"""Lazy package exports (PEP 562): importing a package stays light, each name loads on first use.

`import indexer` or `from indexer.llm2vec import LLM2VecError` must not import torch or
transformers (the CLI's `--help` and `l2v index stats` never need them), while
`from indexer import LLM2VecEncoder` keeps working. A package declares which module holds each
public name; its module `__getattr__` imports that module when the name is first asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]],
                                                                     list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`, whose public names live in `exports`
    (name -> module, relative to the package like ".writer", or absolute)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__, sorted(exports)
