"""`l2v embed`: encode a JSONL file of texts into a float32 .npy matrix."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .config import POOLING_MODES
from .errors import LLM2VecError
from .sources import DEFAULT_MODEL


def read_jsonl_inputs(path: Path) -> tuple[list[str | None], list[str]]:
    """Instructions and texts from lines like {"instruction": "...", "text": "..."}."""
    instructions, texts = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.ClickException(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise click.ClickException(f'{path}:{number}: expected an object with a string "text" field')
            instructions.append(row.get("instruction"))
            texts.append(row["text"])
    if not texts:
        raise click.ClickException(f"{path}: no input lines")
    return instructions, texts


@click.command()
@click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
              help="Model directory, hub id, .gguf file or embedded name.")
@click.option("--adapter", "-a", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="PEFT LoRA adapter directory; repeat to stack (e.g. -a mntp -a supervised).")
@click.option("--pooling", type=click.Choice(POOLING_MODES), default=None,
              help="Pooling mode [default: from llm2vec_config.json, else mean].")
@click.option("--causal", is_flag=True, help="Keep causal attention (the untrained-LLM baseline).")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Max tokens per input [default: 512].")
@click.option("--keep-case", is_flag=True,
              help="Keep texts written entirely in capitals as they are (by default they are lower-cased).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="float16 is the fast mode on GPU; on CPU use --precision bf16.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8", "auto"]), default="fp32", show_default=True,
              help="bf16: bfloat16 on CPUs with AVX512-BF16/AMX (about 2x, cosine >= 0.986 to fp32); int8: quantized "
                   "linear layers on CPU (1.6-1.9x, cosine >= 0.99 to fp32 on passages, less on short texts); auto: "
                   "the fastest of the two that a self-check finds faster and as accurate.")
@click.option("--normalize", is_flag=True, help="L2-normalise the vectors.")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSONL, one {"instruction": str (optional), "text": str} per line.')
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the float32 [n, dim] matrix (.npy), rows in input order.")
def embed(model, adapters, pooling, causal, max_length, keep_case, batch_size, dtype, precision, normalize, input_path,
          output_path) -> None:
    """Encode texts (with optional instructions) into a .npy matrix.

    \b
    Example:
      echo '{"instruction": "Retrieve passages that answer the question", "text": "what is LoRA?"}' > q.jsonl
      l2v embed --model smollm2-135m --input q.jsonl --output q.npy

    The instruction is read by the model but left out of pooling, as in LLM2Vec.
    """
    import numpy as np

    from .encoder import LLM2VecEncoder  # torch and transformers: only once the command runs

    instructions, texts = read_jsonl_inputs(input_path)
    try:
        encoder = LLM2VecEncoder.from_pretrained(model, adapters, bidirectional=not causal, pooling=pooling,
                                                 max_length=max_length, dtype=dtype, fold_all_caps=not keep_case,
                                                 precision=precision)
        vectors = encoder.encode(texts, instructions, batch_size=batch_size, normalize=normalize,
                                 show_progress_bar=True)
    except LLM2VecError as exc:
        raise click.ClickException(str(exc)) from None
    output_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(output_path, vectors.astype(np.float32, copy=False))
    click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {output_path} ({encoder})", err=True)
