"""`l2v train mntp | simcse | supervised | distill`: one LLM2Vec stage from a config file, scaled by flags."""

from __future__ import annotations

from pathlib import Path

import click

from ..sources import DEFAULT_MODEL
from .config import STAGES, TrainConfig

_STAGE_HELP = {
    "mntp": "Masked next token prediction (step 2): adapts the LLM to bidirectional attention.\n\n"
            "DATA: text, one paragraph per line (.txt) or {\"text\": ...} lines (.jsonl).",
    "simcse": "Unsupervised SimCSE (step 3): one sentence twice, dropout makes the two views.\n\n"
              "DATA: text as for mntp. Pass the MNTP adapter with --adapter.",
    "supervised": "Supervised contrastive (step 4): query (with instruction) / positive / hard negative.\n\n"
                  'DATA: JSONL {"query", "positive", "negative"?, "source"?, "instruction"?}. '
                  "Pass the MNTP adapter with --adapter.",
    "distill": "Supervised contrastive with a teacher: the teacher (--teacher) mines hard negatives for each "
               "pair and its scores over each query's candidates are soft targets (KL, mixed with InfoNCE by "
               "distill_weight).\n\nDATA: pairs as for supervised; `paragraphs:` in the config adds (first "
               "sentence -> rest) pairs. Pass the MNTP adapter with --adapter.",
}


def _stage_command(stage: str) -> click.Command:
    @click.command(name=stage, help=_STAGE_HELP[stage] + "\n\nRerunning the same command resumes from the "
                   "last checkpoint in OUTPUT. The adapter, llm2vec_config.json, train_config.json and "
                   "train_log.jsonl land in OUTPUT.")
    @click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="YAML/JSON settings (any TrainConfig field); flags override it.")
    @click.option("--data", type=click.Path(exists=True, dir_okay=False), help="Training data file.")
    @click.option("--output", "output_dir", type=click.Path(file_okay=False), help="Output directory.")
    @click.option("--model", "-m", default=None, help=f"Base model [default: {DEFAULT_MODEL}:base, the untrained default model].")
    @click.option("--adapter", "-a", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
                  help="Adapter(s) merged before training, e.g. the MNTP adapter.")
    @click.option("--max-steps", type=int, default=None)
    @click.option("--batch-size", type=int, default=None)
    @click.option("--grad-accum", type=int, default=None, help="Gradient accumulation steps.")
    @click.option("--learning-rate", "--lr", "learning_rate", type=float, default=None)
    @click.option("--warmup-steps", type=int, default=None)
    @click.option("--max-length", type=int, default=None, help="Tokens per sequence.")
    @click.option("--seed", type=int, default=None)
    @click.option("--save-steps", type=int, default=None, help="Checkpoint every N steps.")
    @click.option("--bf16", type=click.Choice(["auto", "true", "false"]), default=None,
                  help="bf16 autocast; auto = where the hardware has native bf16.")
    @click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
    @click.option("--teacher", default=None,
                  help="[distill] Sentence-transformers folder, all-MiniLM-L6-v2 or all-mpnet-base-v2.")
    @click.option("--paragraphs", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="[distill] Paragraphs (one per line) made into first sentence -> rest pairs.")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    def command(config_file, quiet, adapters, **flags):
        try:
            config = TrainConfig.build(stage, config_file, adapters=list(adapters) or None, **flags)
        except (ValueError, TypeError) as exc:
            raise click.ClickException(str(exc)) from None
        from .trainer import train as run_training  # torch, transformers, peft: only once a stage runs

        output = run_training(config, show_progress=not quiet)
        click.echo(f"adapter written to {output}", err=True)

    return command


@click.group()
def train() -> None:
    """Train LLM2Vec LoRA adapters: mntp, then simcse or supervised on top.

    \b
    The recipe of the paper, chained like the released checkpoints:
      l2v train mntp --data wiki.txt --output adapters/mntp
      l2v train supervised --data pairs.jsonl -a adapters/mntp --output adapters/supervised
      l2v embed -a adapters/mntp -a adapters/supervised --input q.jsonl --output q.npy
    """


for _stage in STAGES:
    train.add_command(_stage_command(_stage))


@train.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cooldown-steps", type=click.IntRange(min=1), required=True,
              help="Steps over which the learning rate decays from the run's current rate to zero.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def branch(run_dir: Path, output: Path, cooldown_steps: int, quiet: bool) -> None:
    """Finish a run midway: train on from RUN_DIR's newest checkpoint in OUTPUT, the learning rate
    decaying to zero over --cooldown-steps (warmup-stable-decay), on the batches the run would have
    seen next. The run is left as it is; rerunning the command resumes the branch.

    \b
    A long run, cooled down for 60 steps at its newest checkpoint and exported:
      l2v train branch indexer/llm2vec/training/runs/gemma3-270m/distill-epoch /tmp/cooled --cooldown-steps 60
      l2v train export /tmp/cooled /tmp/cooled-adapter
    """
    from .branch import branch_run
    from .trainer import train as run_training

    try:
        config = branch_run(run_dir, output, cooldown_steps)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    run_training(config, show_progress=not quiet)
    click.echo(f"adapter written to {output}", err=True)


@train.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-model", default=None, help="Base model named in adapter_config.json [default: the run's model].")
@click.option("--checkpoint", is_flag=True,
              help="Export the run's newest checkpoint (a run still going or stopped), to measure it midway.")
def export(run_dir: Path, target: Path, base_model: str | None, checkpoint: bool) -> None:
    """Copy a finished run's adapter to TARGET for shipping: float16 weights, portable base-model
    name, configs, training log and data hash (no optimizer checkpoints).

    \b
    A long run, measured at its newest checkpoint while it trains on:
      l2v train export --checkpoint indexer/llm2vec/training/runs/smollm2-135m/distill-epoch /tmp/midway
      l2v embed -m smollm2-135m:mntp+supervised -a /tmp/midway --input q.jsonl --output q.npy
    """
    from .export import export_adapter

    try:
        export_adapter(run_dir, target, base_model=base_model, checkpoint=checkpoint)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {run_dir} to {target}", err=True)
