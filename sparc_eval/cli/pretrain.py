"""``sparc-eval pretrain``: train SPARC (or a baseline) from a recipe YAML; checkpoints load as ``sparc:DIR``."""
from __future__ import annotations

from pathlib import Path

import click

from . import UserError, log


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Training recipe YAML (see configs/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, dotted (e.g. steps=200, optim.lr=1e-3, data.root=/data/world).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: the config's output_dir; with --seed, that folder + '-seed<N>').")
@click.option("--seed", type=int, default=None,
              help="Training seed (overrides the config's). Runs of one recipe that differ only in the seed form a "
                   "seed group; without -o (or --set output_dir=) each seed gets its own run folder.")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None, metavar="[CHECKPOINT]",
              help="Continue from the latest checkpoint of the run folder (bare --resume) or from CHECKPOINT "
                   "(its later checkpoints and log lines are removed).")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in a run folder that holds an earlier run (its checkpoints and log are removed); "
                   "without it a non-empty run folder is refused.")
@click.option("--stop-after", type=click.IntRange(1), metavar="N",
              help="Stop after N steps of this invocation, with a checkpoint (for time-limited jobs).")
@click.option("--device", help="auto, cpu, cuda (overrides the config).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines.")
def pretrain(config_path, overrides, output, resume, overwrite, stop_after, device, seed, quiet) -> None:
    """Pretrain a dual encoder with SPARC or a baseline loss.

    \b
    sparc-eval pretrain --config configs/shapes-sparc.yaml
    sparc-eval pretrain --config configs/shapes-sparc.yaml --seed 1     # into runs/shapes-sparc-seed1
    sparc-eval pretrain --config configs/sparc-vit-b16.yaml --set data.shards='/data/{00000..00999}.tar'
    torchrun --nproc-per-node 8 -m sparc_eval.pretrain --config configs/sparc-vit-b16.yaml
    sparc-eval run --task shapes-retrieval --model sparc:runs/shapes-sparc
    """
    from ..errors import SparcEvalError

    try:
        from ..params import parse_assignment
        from ..pretrain.config import load_config
        from ..pretrain.train import train

        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other")
        sets = dict(parse_assignment(o, "--set") for o in overrides)
        if output:  # taken as given, not parsed as YAML (-o 007 is the folder 007)
            sets["output_dir"] = str(output)
        if device:
            sets["device"] = device
        if seed is not None:
            sets["seed"] = seed
        cfg = load_config(config_path, sets)
        if seed is not None and "output_dir" not in sets:
            cfg = load_config(config_path, {**sets, "output_dir": f"{cfg.output_dir}-seed{seed}"})
        out = train(cfg, resume=True if resume == "latest" else (resume or False), stop_after=stop_after,
                    progress=not quiet, log=(lambda m: None) if quiet else log, overwrite=overwrite)
    except SparcEvalError as e:
        raise UserError(str(e)) from None
    if not quiet:
        summary = {k: out[k] for k in ("step", "loss") if k in out}
        log(f"done: {summary}; checkpoints in {cfg.output_dir} (evaluate with --model sparc:{cfg.output_dir})")


COMMANDS = [pretrain]
