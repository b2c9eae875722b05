"""`l2v export`: write an encoder (model + adapters) as a sentence-transformers folder.

Not `l2v train export`, which copies a trained LoRA adapter into the package.
"""

from __future__ import annotations

from pathlib import Path

import click

from .config import POOLING_MODES
from .errors import LLM2VecError
from .st_export import FORMATS, check_target


@click.command("export")
@click.argument("encoder")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--adapter", "-a", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="PEFT LoRA adapter directory to merge in; repeat to stack (e.g. -a mntp -a supervised).")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=FORMATS[0], show_default=True,
              help="Folder layout to write.")
@click.option("--pooling", type=click.Choice(POOLING_MODES), default=None,
              help="Pooling mode [default: from llm2vec_config.json]; sentence-transformers takes mean or last_token.")
@click.option("--no-normalize", is_flag=True, help="Leave out the Normalize module (raw, unnormalised vectors).")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists and is not empty.")
def export(encoder, out_dir, adapters, format_, pooling, no_normalize, force) -> None:
    """Export ENCODER to OUT_DIR as a sentence-transformers model folder.

    ENCODER is a model directory, hub id, .gguf file or embedded name (with its adapters).

    \b
    Example:
      l2v export smollm2-135m out/
      python -c 'from sentence_transformers import SentenceTransformer as S; print(S("out/").encode_query("hi"))'

    OUT_DIR gets the merged weights (safetensors), a config.json with bidirectional attention on,
    the tokenizer, modules.json (Transformer -> Pooling -> Normalize), the query instruction of
    every task as a prompt (`encode(..., prompt_name="scientific_claim")`, `encode_query`),
    llm2vec_config.json and a model card. The folder is written next to OUT_DIR and renamed
    into place: a failed export leaves nothing behind.
    """
    from .encoder import LLM2VecEncoder  # torch and transformers: only once the command runs

    try:
        check_target(out_dir.expanduser().absolute(), force=force)  # before the model loads
        loaded = LLM2VecEncoder.from_pretrained(encoder, adapters, pooling=pooling)
        folder = loaded.save_sentence_transformers(out_dir, normalize=not no_normalize, force=force)
    except LLM2VecError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {format_} model {folder} ({loaded})", err=True)
