"""``sparc-eval run``: evaluate a model on tasks or a suite."""
from __future__ import annotations

from pathlib import Path

import click

from . import UserError, log


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    """``I/N`` -> (I, N); the range is checked by ``api.plan_tasks``."""
    if value is None:
        return None
    i, sep, n = value.partition("/")
    if not sep or not i.isdigit() or not n.isdigit():
        raise UserError(f"--shard {value!r}: expected I/N with 1 <= I <= N (e.g. 3/16)")
    return int(i), int(n)


@click.command()
@click.option("--task", "tasks", multiple=True, metavar="NAME", help="Task name or YAML path (repeatable).")
@click.option("--suite", metavar="NAME", help="Run every task of a suite (tasks/suites/NAME.yaml).")
@click.option("--model", "model_spec", metavar="SPEC",
              help="open_clip:ARCH, hf:DIR_OR_NAME, sparc:DIR or py:module:function.")
@click.option("--pretrained", metavar="TAG_OR_FILE", help="open_clip tag (local cache only) or weights file.")
@click.option("--model-name", metavar="NAME", help="Name of the model in results (default: slug of spec).")
@click.option("--data-root", envvar="SPARC_EVAL_DATA", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the datasets (env SPARC_EVAL_DATA).")
@click.option("--output", "-o", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Results folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--num-workers", type=click.IntRange(0), help="DataLoader workers (default: up to 4).")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (result marked partial).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for random init, bootstrap, splits.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a task param or dataset key.")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Extra folder of task YAMLs (repeatable).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cache folder (default $SPARC_EVAL_CACHE or ~/.cache/sparc-eval).")
@click.option("--overwrite", is_flag=True, help="Recompute results that already exist.")
@click.option("--resolution", type=click.IntRange(8), help="Override the image resolution.")
@click.option("--interpolation", type=click.Choice(["bicubic", "bilinear", "nearest"]), help="Override interpolation.")
@click.option("--crop", type=click.Choice(["center", "squash", "pad"]), help="Override the crop mode.")
@click.option("--dense", type=click.Choice(["direct", "maskclip"]), default="direct", show_default=True,
              help="Dense patch-embedding path of CLIP-style ViTs.")
@click.option("--shard", metavar="I/N", help="Run only the I-th of N interleaved slices of the task list (1-based).")
@click.option("--predictions", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Captions file to score (caption tasks; no --model needed).")
@click.option("--cache-dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of embeddings stored in the cache (fp16 halves it for very large sets).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines.")
def run(model_spec, tasks, no_cache, resolution, interpolation, crop, shard, quiet, **options) -> None:
    """Evaluate a model on tasks or a suite and print a results table.

    \b
    sparc-eval run --task coco-retrieval --model open_clip:ViT-B-32 --pretrained ep32.pt --data-root /datasets
    sparc-eval run --suite demo --model open_clip:ViT-Tiny-8-64
    torchrun --nproc-per-node 8 -m sparc_eval run --suite sparc-paper --model sparc:ckpt --data-root /datasets
    """
    from ..api import EvalOptions
    from ..api import run as run_api

    if model_spec is None and options["predictions"] is None:
        raise UserError("--model is required (or --predictions for caption tasks)")
    pre = {k: v for k, v in (("resolution", resolution), ("interpolation", interpolation), ("crop", crop))
           if v is not None}
    opts = EvalOptions(**options, use_cache=not no_cache, preprocessing=pre, shard=_parse_shard(shard),
                       progress=not quiet, log=(lambda m: None) if quiet else log)
    evals = run_api(model_spec, list(tasks), opts)
    from .. import distributed
    from ..results.table import print_run_table

    d = distributed.info()
    if d is None or d.main:
        print_run_table(evals)
    distributed.shutdown()


COMMANDS = [run]
