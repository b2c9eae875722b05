"""`l2v`: the command line, a thin skin over the library (one command per API call).

Commands load lazily: `COMMANDS` names the module and attribute of each, and a command's module
is imported only when that command runs or its help is shown. Command modules import torch,
transformers and other heavy libraries inside their functions, so `l2v --help` (which lists
every command's short help) stays light. To add a command, add one line to `COMMANDS`.

The CLI sets `OMP_WAIT_POLICY=PASSIVE` (unless the environment sets it): OpenMP threads that
spin while they wait, the default, slow torch down several-fold as soon as another program wants
the CPU (measured on a shared 2-core machine: 64 short queries 8-27 s with spinning threads, 5 s
with passive ones); on an idle machine both policies measured the same.
"""

from __future__ import annotations

import importlib
import os

import click

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads its OpenMP runtime

COMMANDS: dict[str, str] = {
    "embed": "indexer.llm2vec.cli:embed",
    "export": "indexer.llm2vec.export_cli:export",
    "index": "indexer.cli:index",
    "search": "retriever.search_cli:search",
    "serve": "retriever.serve_cli:serve",
    "train": "indexer.llm2vec.training.cli:train",
}
"""Command name -> "module:attribute" of its click command."""


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use (click's documented LazyGroup)."""

    def __init__(self, *args, lazy_commands: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy_commands:
            return super().get_command(ctx, name)
        module, _, attribute = self.lazy_commands[name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[name]} is a {type(command).__name__}, not a click command")
        return command


@click.group(cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llm2vec-retriever")
def main() -> None:
    """Turn a decoder-only LLM into a text encoder (LLM2Vec) and retrieve with it.

    \b
    Typical session:
      l2v embed --model gemma3-270m --input texts.jsonl --output vectors.npy
      l2v index build my-index docs/            # encode documents into FAISS + SQLite
      l2v search my-index "what is LLM2Vec?"    # ranked chunks with scores

    Models: a Hugging Face directory, a hub id, a .gguf file, or an embedded model:
    gemma3-270m (the default: Gemma 3 270M with its shipped LLM2Vec adapters, i.e.
    gemma3-270m:mntp+supervised+distill3; :mntp+supervised+distill2, the default until
    2026-12-07, :mntp+supervised, :mntp and :base pick another recipe or none) or
    smollm2-135m (SmolLM2-135M, the default until 2026-12-03, i.e.
    smollm2-135m:mntp+supervised+distill2; also :mntp+simcse). Indexes keep the model they
    were built with. Run `l2v COMMAND --help` for details.
    """
