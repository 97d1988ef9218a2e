"""The Python API: ``evaluate()``, ``load_model()``, ``load_task()``. The CLI is a thin layer over it.

``evaluate`` takes a model spec (``open_clip:ViT-B-32``), an already built ``ModelAdapter``, or an
``nn.Module`` with ``transform`` and ``tokenizer`` (the in-training path), runs each task and, with
``write=True``, stores one result JSON (+ per-sample JSONL) per task under ``output``. An identical
earlier run (same model, weights, preprocessing, task config, dataset, seed and limit) is skipped
unless ``overwrite``; the returned ``Evaluation`` says so.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SparcEvalError
from .fileio import sha256_file, sha256_json
from .results.store import SCHEMA, read_result, result_path, write_result
from .tasks import TaskConfig, load_suite, load_task

__all__ = ["Evaluation", "evaluate", "load_model", "load_task", "plan_tasks"]


@dataclass
class Evaluation:
    """Outcome of one (model, task): ``status`` is ``computed``, ``skipped`` (an identical result is on
    disk) or ``unsupported`` (the model lacks an output the task needs; ``result`` holds the reason,
    and ``metrics`` is empty)."""

    task: str
    status: str
    result: dict
    path: Path | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.get("metrics", {})

    @property
    def main_metric(self) -> str | None:
        return self.result.get("main_metric")


def load_model(spec: str, pretrained: str | None = None, **kw):
    """See ``sparc_eval.models.load_model``."""
    from .models import load_model as _load

    return _load(spec, pretrained, **kw)


def plan_tasks(tasks: Sequence[str] = (), suite: str | None = None, include: Sequence[str | Path] = (),
               shard: tuple[int, int] | None = None) -> list[str]:
    """Task names to run: ``tasks`` then the suite's tasks (deduplicated, in order), then the 1-based
    shard ``(i, n)``: every n-th task starting at the i-th."""
    names = list(tasks)
    if suite:
        names += load_suite(suite, include).tasks
    names = list(dict.fromkeys(names))
    if not names:
        raise SparcEvalError("nothing to run: give --task NAME (repeatable) or --suite NAME")
    if shard:
        i, n = shard
        if not (1 <= i <= n):
            raise SparcEvalError(f"--shard {i}/{n}: expected 1 <= i <= n")
        names = names[i - 1::n]
    return names


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) or None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sparc-eval")
    except Exception:
        return "unknown"


def _model_fingerprint(spec: str, pretrained: str | None) -> str:
    """Cheap identity of the weights before loading: file hashes where files exist, else the strings."""
    from .models.checkpoint_io import folder_weights_sha256

    parts: list[Any] = [spec, pretrained]
    if pretrained and Path(pretrained).expanduser().is_file():
        parts.append(sha256_file(Path(pretrained).expanduser()))
    prefix, _, rest = spec.partition(":")
    target = Path(rest).expanduser()
    if prefix == "sparc" and target.is_dir():
        from .pretrain.checkpoint import resolve_checkpoint

        try:  # a run folder: the checkpoint it resolves to now (the latest, or --pretrained STEP)
            target = resolve_checkpoint(target, pretrained)
        except SparcEvalError:
            pass
    if prefix in ("hf", "sparc") and target.is_dir():
        try:
            parts.append(folder_weights_sha256(target))
        except SparcEvalError:
            pass  # no weights: the loader says so
    if prefix == "py":
        parts.append(_py_source_sha256(rest))
    return sha256_json(parts)


def _py_source_sha256(target: str) -> str | None:
    """sha256 of the file of a ``py:`` model's module (``path/to/file.py`` or ``module.path``, found
    without importing it), so an edited model is not skipped as identical."""
    module = target.rpartition(":")[0]
    if module.endswith(".py"):
        path: Path | None = Path(module).expanduser()
    else:
        import importlib.util

        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        path = Path(spec.origin) if spec is not None and spec.origin else None
    return sha256_file(path) if path is not None and path.is_file() else None


def _other_model(path: Path, spec: str, weights_sha256: str | None) -> str | None:
    """Why the result at ``path`` belongs to another model stored under the same name, else None."""
    if not path.is_file():
        return None
    try:
        old = read_result(path)["model"]
    except SparcEvalError:
        return None
    new = {"spec": spec, "weights_sha256": weights_sha256}
    differ = [k for k, v in new.items() if v is not None and old.get(k) is not None and old.get(k) != v]
    if not differ:
        return None
    found = ", ".join(f"{k} {str(old.get(k))[:16]!r}, this run {str(new[k])[:16]!r}" for k in differ)
    return (f"{path}: holds the result of another model under the name {old.get('name')!r} ({found}); "
            f"pass --model-name NAME to keep both, or --overwrite to replace it")


def evaluate(model: Any, tasks: Sequence[str | TaskConfig] | str = (), *, suite: str | None = None,
             pretrained: str | None = None, model_name: str | None = None, transform: Callable | None = None,
             tokenizer: Callable | None = None, data_root: str | Path | None = None, output: str | Path = "results",
             write: bool = True, params: Iterable[str] | Mapping[str, Any] = (), include: Sequence[str | Path] = (),
             device: str | None = None, precision: str = "fp32", batch_size: int = 64, num_workers: int | None = None,
             limit: int | None = None, seed: int = 0, use_cache: bool = True, cache_dir: str | Path | None = None,
             overwrite: bool = False, preprocessing: Mapping[str, Any] | None = None, dense: str = "direct",
             shard: tuple[int, int] | None = None, predictions: str | Path | None = None, progress: bool = True,
             cache_dtype: str = "fp32", distributed: bool = True,
             log: Callable[[str], None] = print) -> list[Evaluation]:
    """Evaluate ``model`` on ``tasks`` (names, YAML paths or ``TaskConfig``s) and/or a ``suite``.

    Under torchrun (``distributed=True``) extraction is shared by the ranks and rank 0 writes;
    ``distributed=False`` ignores any process group (e.g. evaluation from one rank of a training
    job: no collectives are started). With several tasks, a task the model cannot serve (a ConvNet
    on a dense task) is recorded as ``unsupported`` and the others run; a single task raises.
    A result of another model (other spec or weights) under the same name is never replaced
    silently: pass ``model_name`` or ``overwrite``.
    """
    from .engine import EmbeddingCache, Engine
    from .engine import distributed as dist
    from .models.base import ModelAdapter, ModelIdentity, UnsupportedCapability, check_precision, resolve_device
    from .task_types import EvalContext, get_task_type

    dist_info = dist.init_from_env(device) if distributed else None
    write_files = write
    if dist_info is not None:
        device = dist.rank_device(dist_info, device)
        if not dist_info.main:  # rank 0 alone logs, shows progress and writes results
            log, progress, write_files = (lambda m: None), False, False

    if isinstance(tasks, str):
        tasks = [tasks]
    if limit is not None and limit < 1:
        raise SparcEvalError(f"--limit {limit}: expected a positive number of samples")
    names = [t for t in tasks if not isinstance(t, TaskConfig)]
    if names or suite:
        names = plan_tasks(names, suite, include, shard)
    configs = [t for t in tasks if isinstance(t, TaskConfig)] + [
        load_task(n, include=include, data_root=data_root, overrides=params) for n in names]
    check_precision(precision)
    dev = resolve_device(device)
    pre_overrides = {k: v for k, v in (preprocessing or {}).items() if v is not None}

    adapter: ModelAdapter | None = None
    cacheable = use_cache
    spec_for_key: str
    if isinstance(model, ModelAdapter):
        adapter = model
        spec_for_key = model.identity.spec
        model_fp = model.identity.weights_sha256
        name = model_name or model.identity.name
    elif isinstance(model, str):
        from .models import default_model_name

        spec_for_key = model
        name = model_name or default_model_name(model, pretrained)
        model_fp = _model_fingerprint(model, pretrained)
    elif model is None:
        spec_for_key, name, model_fp = "none", model_name or "predictions", "none"
    else:
        from .models.python_adapter import wrap_module

        if transform is None or tokenizer is None:
            raise SparcEvalError("evaluate(nn.Module): pass transform= and tokenizer= with the module")
        spec_for_key = f"module:{type(model).__qualname__}"
        name = model_name or type(model).__name__.lower()
        model_fp = sha256_json({"module": spec_for_key, "id": id(model), "time": time.time()})
        cacheable = False  # a one-off identity: cache entries could never be read again
        adapter = wrap_module(model, transform, tokenizer, identity=ModelIdentity(spec_for_key, None, name, model_fp),
                              device=dev, precision=precision)

    def get_adapter() -> ModelAdapter:
        nonlocal adapter
        if adapter is None:
            if not isinstance(model, str):
                raise SparcEvalError("this task needs a model: pass --model")
            log(f"loading model {model}" + (f" ({pretrained})" if pretrained else ""))
            adapter = load_model(model, pretrained, device=dev, precision=precision, model_name=name, seed=seed,
                                 preprocessing=dict(pre_overrides), dense=dense)
        return adapter

    cache = EmbeddingCache(Path(cache_dir) / "embeddings" if cache_dir else None) if cacheable else None
    engine: Engine | None = None
    out: list[Evaluation] = []
    git = _git_revision()
    for cfg in configs:
        task = get_task_type(cfg.type).from_config(cfg)
        run_key = sha256_json({"task": cfg.config_sha256, "model": model_fp, "spec": spec_for_key, "name": name,
                               "preprocessing": pre_overrides, "precision": precision, "seed": seed,
                               "limit": limit, "dense": dense, "cache_dtype": cache_dtype,
                               "predictions": sha256_file(predictions) if predictions else None})
        path = result_path(output, name, cfg.name)
        old = _identical_result(path, run_key, task, limit) if write and not overwrite else None
        if dist_info is not None:
            old = dist.broadcast(old, dist_info)
        if old is not None:
            log(f"{cfg.name}: identical result exists at {path}; skipped (use --overwrite to recompute)")
            out.append(Evaluation(cfg.name, "skipped", old, path))
            continue
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        m = get_adapter() if task.needs_model else adapter
        clash = (_other_model(path, spec_for_key, m.identity.weights_sha256 if m is not None else None)
                 if write_files and not overwrite else None)
        if dist_info is not None:
            clash = dist.broadcast(clash, dist_info)
        if clash:
            raise SparcEvalError(clash)
        if task.needs_model:
            missing = [c for c in task.requires if not m.supports(c)]
            if missing:
                why = f"needs model outputs {missing}, which {m.identity.name!r} does not provide"
                if len(configs) == 1:
                    raise SparcEvalError(f"task {cfg.name!r} {why}")
                log(f"{cfg.name}: not run: {why}")
                out.append(Evaluation(cfg.name, "unsupported", {"reason": why}))
                continue
            if engine is None:
                engine = Engine(m, cache=cache, batch_size=batch_size, num_workers=num_workers, progress=progress,
                                cache_dtype=cache_dtype, dist=dist_info)
        ctx = EvalContext(engine=engine, seed=seed, limit=limit, progress=progress, log=log,
                          work_dir=path.parent if write_files else None,
                          predictions=Path(predictions) if predictions else None)
        stats_before = engine.stats.as_dict() if engine else {}
        try:
            res = task.evaluate(m, ctx)
        except UnsupportedCapability as e:
            if len(configs) == 1:
                raise
            log(f"{cfg.name}: not run: {e}")
            out.append(Evaluation(cfg.name, "unsupported", {"reason": str(e)}))
            continue
        wall = time.perf_counter() - t0
        result = _result_dict(cfg, res, m, name, spec_for_key, seed, limit, run_key, started, wall, precision,
                              batch_size, dev, git, engine, stats_before)
        if shard:
            result["provenance"]["shard"] = f"{shard[0]}/{shard[1]}"
        if write_files:
            write_result(path, result, res.records)
            log(f"{cfg.name}: wrote {path}")
        out.append(Evaluation(cfg.name, "computed", result, path if write else None))
    return out


def _identical_result(path: Path, run_key: str, task, limit: int | None) -> dict | None:
    """The stored result at ``path`` if it came from the same inputs and the same data, else None."""
    if not path.is_file():
        return None
    try:
        old = read_result(path)
    except SparcEvalError:
        return None
    if old.get("run_key") != run_key or old["dataset"].get("fingerprint") != task.load_data(limit).fingerprint:
        return None
    return old


def _result_dict(cfg: TaskConfig, res, model, name: str, spec: str, seed: int, limit: int | None, run_key: str,
                 started, wall: float, precision: str, batch_size: int, device, git, engine, stats_before) -> dict:
    import torch

    from .metrics.registry import check_keys
    from .results.aggregate import intervals

    check_keys(res.metrics, f"task {cfg.name}")
    ivals = intervals(res.records, res.aggregations, seed=seed) if res.records and res.aggregations else {}
    stats = {}
    if engine is not None:
        now = engine.stats.as_dict()
        stats = {k: now[k] - stats_before.get(k, 0) for k in now}
    identity = model.identity.as_dict() if model is not None else {"spec": spec, "pretrained": None, "name": name,
                                                                      "weights_sha256": None}
    identity["name"] = name
    return {
        "schema": SCHEMA,
        "task": {"name": cfg.name, "type": cfg.type, "version": cfg.version, "config_sha256": cfg.config_sha256,
                 "groups": cfg.groups, "config": cfg.as_dict()},
        "model": identity,
        "dataset": {"name": cfg.dataset.get("name"), "format": cfg.dataset["format"],
                    "fingerprint": res.dataset_fingerprint, "n_total": res.n_total, "n_used": res.n_used,
                    "limit": limit, "partial": bool(limit is not None and res.n_used < res.n_total)},
        "seed": seed,
        "metrics": res.metrics,
        "main_metric": res.main_metric,
        "intervals": ivals,
        "chance": res.chance,
        "aggregations": res.aggregations,
        "details": res.details,
        "preprocessing": model.preprocessing if model is not None else {},
        "provenance": {"sparc_eval": _version(), "git": git, "torch": torch.__version__, "python": platform.python_version(),
                       "world_size": engine.dist.world if engine is not None and engine.dist else 1,
                       "cache_dtype": engine.cache_dtype if engine is not None else None,
                       "host": platform.node(), "device": str(device), "precision": precision, "batch_size": batch_size,
                       "threads": torch.get_num_threads(), "started": started.isoformat(timespec="seconds"),
                       "wall_s": round(wall, 3), "engine": stats, "pid": os.getpid()},
        "run_key": run_key,
    }
