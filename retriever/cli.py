"""`l2v`: the command line, a thin skin over the library (one command per API call)."""

from __future__ import annotations

import click

from indexer.cli import index
from indexer.llm2vec.cli import embed
from indexer.llm2vec.training.cli import train

from .search_cli import search


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llm2vec-retriever")
def main() -> None:
    """Turn a decoder-only LLM into a text encoder (LLM2Vec) and retrieve with it.

    \b
    Typical session:
      l2v embed --model smollm2-135m --input texts.jsonl --output vectors.npy
      l2v index build my-index docs/            # encode documents into FAISS + SQLite
      l2v search my-index "what is LLM2Vec?"    # ranked chunks with scores

    Models: a Hugging Face directory, a hub id, a .gguf file, or an embedded model:
    smollm2-135m (the default, with its shipped LLM2Vec adapters, i.e.
    smollm2-135m:mntp+supervised; smollm2-135m:mntp+simcse and smollm2-135m:base
    pick another recipe or none) or gemma3-270m. Run `l2v COMMAND --help` for details.
    """


main.add_command(embed)
main.add_command(train)
main.add_command(index)
main.add_command(search)
