"""``sparc-eval run``: evaluate a model on tasks or a suite."""
from __future__ import annotations

import contextlib
import os
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


def _models(specs, pretrained, names, models_file: Path | None) -> list[tuple[str, str | None, str | None]]:
    """(spec, pretrained, name) of every model: ``--model`` with ``--pretrained``/``--model-name`` paired in
    order (one value applies to every model; none means none), then the lines of ``--models FILE``."""
    for what, values in (("--pretrained", pretrained), ("--model-name", names)):
        if len(values) > 1 and len(values) != len(specs):
            raise UserError(f"{what} given {len(values)} times for {len(specs)} --model: give it once per model, "
                            f"in the same order (or once for all)")
    if len(names) == 1 and len(specs) > 1:
        raise UserError("--model-name given once for several --model: each model needs its own name")

    def pick(values, i):  # '' stands for "none" in a paired list (--pretrained '' for a random init)
        return (values[i] if len(values) > 1 else (values[0] if values else None)) or None

    models = [(s, pick(pretrained, i), pick(names, i)) for i, s in enumerate(specs)]
    if models_file is not None:
        if not models_file.is_file():  # a FIFO would block
            raise UserError(f"--models {models_file}: not a regular file; expected one spec[,pretrained][,name] per line")
        try:
            text = models_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"--models {models_file}: not UTF-8 text (byte {e.start})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p.strip() or None for p in line.split(",")]
            if len(parts) > 3 or parts[0] is None:
                raise UserError(f"{models_file}:{lineno}: {line!r}; expected spec[,pretrained][,name]")
            models.append((parts[0], *(parts[1:] + [None, None])[:2]))
    return models


@click.command()
@click.option("--task", "tasks", multiple=True, metavar="NAME", help="Task name or YAML path (repeatable).")
@click.option("--suite", metavar="NAME", help="Run every task of a suite (tasks/suites/NAME.yaml).")
@click.option("--model", "model_specs", multiple=True, metavar="SPEC",
              help="open_clip:ARCH, open_clip:hf-hub:ORG/NAME, hf:DIR_OR_NAME, sparc:DIR or py:module:function "
                   "(repeatable: several models in one call).")
@click.option("--pretrained", "pretrained_list", multiple=True, metavar="TAG_OR_FILE",
              help="open_clip pretrained tag (fetched on first use) or weights file; repeated, paired in order "
                   "with --model.")
@click.option("--model-name", "name_list", multiple=True, metavar="NAME",
              help="Name of the model in results (default: slug of spec); repeated, paired with --model.")
@click.option("--models", "models_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="File of models, one 'spec[,pretrained][,name]' per line (# comments).")
@click.option("--offline", is_flag=True, help="Never touch the network (HF_HUB_OFFLINE=1): cached weights only.")
@click.option("--data-root", envvar="SPARC_EVAL_DATA", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the datasets (env SPARC_EVAL_DATA).")
@click.option("--output", "-o", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Results folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--num-workers", type=click.IntRange(0), help="DataLoader workers (default: up to 4).")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (result marked partial).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed for random init, bootstrap, splits.")
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
@click.option("--no-trim-text", is_flag=True,
              help="Pad texts to the full context length (default: each batch is cut to its longest text where that is exact).")
@click.option("--dense", type=click.Choice(["direct", "maskclip"]), default="direct", show_default=True,
              help="Dense patch-embedding path of CLIP-style ViTs.")
@click.option("--shard", metavar="I/N", help="Run only the I-th of N interleaved slices of the task list (1-based).")
@click.option("--predictions", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Captions file to score (caption tasks; no --model needed).")
@click.option("--cache-dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of embeddings stored in the cache (fp16 halves it for very large sets).")
@click.option("--allow-outside-root", is_flag=True,
              help="Read annotation paths that point outside the dataset folder (absolute or with '..').")
@click.option("--role", type=click.Choice(["model", "control", "reference"]), default="model", show_default=True,
              help="What the model's rows are for: a model under evaluation (ranked), a control that should sit at "
                   "chance (e.g. untrained weights), or a reference such as an oracle.")
@click.option("--seed-group", metavar="NAME",
              help="Method this model is one training seed of (default: a sparc: checkpoint card's method).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines on the terminal (--log-file still "
                                                  "gets them).")
@click.option("--log-format", type=click.Choice(["auto", "terminal", "plain"]), default="auto", show_default=True,
              help="terminal: live bars; plain: one timestamped line when each phase starts and ends, no carriage "
                   "returns (for files and CI); auto: terminal when stderr is one, else plain.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also append the plain, timestamped log to FILE (whatever the terminal shows).")
def run(model_specs, pretrained_list, name_list, models_file, offline, tasks, no_cache, resolution, interpolation,
        crop, no_trim_text, shard, allow_outside_root, quiet, log_format, log_file, **options) -> None:
    """Evaluate a model on tasks or a suite and print a results table.

    \b
    sparc-eval run --task coco-retrieval --model open_clip:ViT-B-32 --pretrained ep32.pt --data-root /datasets
    sparc-eval run --suite demo --model open_clip:ViT-Tiny-8-64
    sparc-eval run --task imagenet1k --model open_clip:ViT-B-32 --pretrained laion2b_s34b_b79k \\
        --model open_clip:ViT-B-16 --pretrained openai --data-root /datasets
    torchrun --nproc-per-node 8 -m sparc_eval run --suite sparc-paper --model sparc:ckpt --data-root /datasets
    """
    if offline:
        from ..hub import set_offline

        set_offline(True)  # before anything imports huggingface_hub, transformers or open_clip
    from ..api import EvalOptions

    models = _models(model_specs, pretrained_list, name_list, models_file)
    if not models and options["predictions"] is None:
        raise UserError("--model is required (or --models FILE, or --predictions for caption tasks)")
    pre = {k: v for k, v in (("resolution", resolution), ("interpolation", interpolation), ("crop", crop))
           if v is not None}
    if no_trim_text:
        pre["trim_text"] = False
    if allow_outside_root:
        options["params"] = (*options["params"], "allow_outside_root=true")
    from .. import progress

    with contextlib.ExitStack() as stack:
        tee = None
        if log_file is not None and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone writes it
            try:
                tee = stack.enter_context(open(log_file, "a", encoding="utf-8"))
            except OSError as e:
                raise UserError(f"--log-file {log_file}: cannot write there ({e.strerror})") from None
        bars = not quiet and progress.for_terminal(log_format)
        reporter = progress.Reporter(None if quiet else log, bars=bars, stamp=not bars, tee=tee)
        opts = EvalOptions(**options, use_cache=not no_cache, preprocessing=pre, shard=_parse_shard(shard),
                           progress=not quiet, log=reporter.log)
        with progress.use(reporter):
            _run(models, tasks, opts)


def _run(models, tasks, opts) -> None:
    from .. import distributed
    from ..api import run as run_api
    from ..api import run_models
    from ..results.table import print_model_summary, print_run_table

    if len(models) <= 1:
        spec, opts.pretrained, opts.model_name = models[0] if models else (None, None, None)
        evals = run_api(spec, list(tasks), opts)
        if distributed.info() is None or distributed.info().main:
            print_run_table(evals)
        distributed.shutdown()
        return
    runs = run_models(models, list(tasks), opts)
    if distributed.info() is None or distributed.info().main:
        print_run_table([e for r in runs for e in r.evaluations])
        print_model_summary(runs)
    distributed.shutdown()
    failed = [r for r in runs if r.error]
    if failed:
        raise click.exceptions.Exit(1)


COMMANDS = [run]
