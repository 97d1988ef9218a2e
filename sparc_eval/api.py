"""The Python API: ``evaluate()``, ``load_model()``, ``load_task()``. The CLI is a thin layer over it.

``evaluate`` takes a model spec (``open_clip:ViT-B-32``), an already built ``ModelAdapter``, or an
``nn.Module`` with ``transform`` and ``tokenizer`` (the in-training path), runs each task and, with
``write=True``, stores one result JSON (+ per-sample JSONL) per task under ``output``. An identical
earlier run (same model, weights, preprocessing, task config, dataset, seed and limit) is skipped
unless ``overwrite``; the returned ``Evaluation`` says so.

It runs four steps, each a small function with a typed value between them:
``plan`` (task specs -> ``ResolvedTask``s, each resolved once), ``identify`` (the model -> ``ModelRef``,
its identity from the loader's own ``fingerprint`` hook, nothing loaded yet), ``run_one`` (one task:
skip, guard, evaluate) and ``record`` (a ``TaskResult`` -> the typed ``ResultRecord`` that is written).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import progress as _progress
from .errors import SparcEvalError
from .fileio import sha256_file, sha256_json, umask
from .results.schema import ROLES, SCHEMA, DatasetInfo, ModelInfo, ResultRecord, TaskInfo
from .results.store import read_result, result_path, write_result
from .task_config import TaskConfig
from .task_types import TaskType
from .tasks import ResolvedTask, load_suite, load_task, resolve_task

__all__ = ["EvalOptions", "Evaluation", "ModelRef", "ModelRun", "evaluate", "load_model", "load_task", "plan",
           "plan_tasks", "run", "run_models"]


@dataclass
class EvalOptions:
    """Everything ``evaluate`` takes besides the model and the tasks (the keywords of ``evaluate``)."""

    suite: str | None = None
    pretrained: str | None = None
    model_name: str | None = None
    transform: Callable | None = None
    tokenizer: Callable | None = None
    data_root: str | Path | None = None
    output: str | Path = "results"
    write: bool = True
    params: Iterable[str] | Mapping[str, Any] = ()
    include: Sequence[str | Path] = ()
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 64
    num_workers: int | None = None
    limit: int | None = None
    seed: int = 0
    use_cache: bool = True
    cache_dir: str | Path | None = None
    overwrite: bool = False
    preprocessing: Mapping[str, Any] | None = None
    dense: str = "direct"
    shard: tuple[int, int] | None = None
    predictions: str | Path | None = None
    progress: bool = True
    cache_dtype: str = "fp32"
    distributed: bool = True
    log: Callable[[str], None] = print
    role: str = "model"
    seed_group: str | None = None


@dataclass
class Evaluation:
    """Outcome of one (model, task): ``status`` is ``computed``, ``skipped`` (an identical result is on
    disk) or ``unsupported`` (the model lacks an output the task needs; ``reason`` says which, and
    ``record`` is None)."""

    task: str
    status: str
    record: ResultRecord | None = None
    path: Path | None = None
    reason: str | None = None

    @property
    def result(self) -> dict:
        """The result as its JSON object (``{"reason": ...}`` for an unsupported task)."""
        return self.record.to_dict() if self.record is not None else {"reason": self.reason}

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.metrics if self.record is not None else {}

    @property
    def main_metric(self) -> str | None:
        return self.record.main_metric if self.record is not None else None


@dataclass
class ModelRef:
    """What ``identify`` knows of the model before loading it: the spec (or a stand-in for objects),
    the result name, the weights fingerprint, an adapter already built (objects), and whether cache
    entries made with this identity could ever be read again."""

    spec: str
    name: str
    fingerprint: str
    adapter: Any = None
    cacheable: bool = True


def load_model(spec: str, pretrained: str | None = None, **kw):
    """See ``sparc_eval.models.load_model``."""
    from .models import load_model as _load

    return _load(spec, pretrained, **kw)


def evaluate(model: Any, tasks: Sequence[str | TaskConfig] | str = (), *, suite: str | None = None,
             pretrained: str | None = None, model_name: str | None = None, transform: Callable | None = None,
             tokenizer: Callable | None = None, data_root: str | Path | None = None, output: str | Path = "results",
             write: bool = True, params: Iterable[str] | Mapping[str, Any] = (), include: Sequence[str | Path] = (),
             device: str | None = None, precision: str = "fp32", batch_size: int = 64, num_workers: int | None = None,
             limit: int | None = None, seed: int = 0, use_cache: bool = True, cache_dir: str | Path | None = None,
             overwrite: bool = False, preprocessing: Mapping[str, Any] | None = None, dense: str = "direct",
             shard: tuple[int, int] | None = None, predictions: str | Path | None = None, progress: bool = True,
             cache_dtype: str = "fp32", distributed: bool = True,
             log: Callable[[str], None] = print, role: str = "model", seed_group: str | None = None) -> list[Evaluation]:
    """Evaluate ``model`` on ``tasks`` (names, YAML paths or ``TaskConfig``s) and/or a ``suite``.

    Under torchrun (``distributed=True``) extraction is shared by the ranks and rank 0 writes;
    ``distributed=False`` ignores any process group (e.g. evaluation from one rank of a training
    job: no collectives are started). With several tasks, a task the model cannot serve (a ConvNet
    on a dense task) is recorded as ``unsupported`` and the others run; a single task raises.
    A result of another model (other spec or weights) under the same name is never replaced
    silently: pass ``model_name`` or ``overwrite``. ``role`` (model, control, reference) and
    ``seed_group`` (the method a seed belongs to; default: a ``sparc:`` checkpoint card's ``method``)
    are stored in each result. The keywords are the fields of ``EvalOptions``.
    """
    given = locals()
    return run(model, tasks, EvalOptions(**{f.name: given[f.name] for f in fields(EvalOptions)}))


def run(model: Any, tasks: Sequence[str | TaskConfig] | str, opts: EvalOptions) -> list[Evaluation]:
    """``evaluate`` with its options in one object: plan, identify, then run (and record) each task.
    Everything a user can get wrong is checked before a model is loaded (``preflight``)."""
    preflight(opts)
    session = _Session.start(opts)
    with _progress.use(session.reporter):
        planned = [(task, task.build()) for task in plan([tasks] if isinstance(tasks, str) else tasks, opts)]
        for task, instance in planned:  # every dataset is read and checked before a model loads
            with _progress.phase("dataset", scope=task.config.name, bars=session.progress):
                instance.load_data(opts.limit)
        ref = identify(model, opts, session)
        session.claim(ref)
        try:
            return [_reported(task, instance, ref, session, len(planned) == 1) for task, instance in planned]
        finally:
            session.release_unused()
            session.reporter.table(f"time per task of {ref.name}")


def _reported(task: ResolvedTask, instance: TaskType, ref: ModelRef, session: _Session, alone: bool) -> Evaluation:
    """``run_one`` in the scope of its task: its phases are its own, and a line gives its total time."""
    with session.reporter.task(task.config.name) as times:
        ev = run_one(task, instance, ref, session, alone)
        times.status = ev.status
    return ev


@dataclass
class ModelRun:
    """One model of a several-model call: its spec, ``pretrained`` and name as given, its evaluations,
    and, when it failed, why (the other models went on)."""

    spec: str | None
    pretrained: str | None
    name: str | None
    evaluations: list[Evaluation] = field(default_factory=list)
    error: str | None = None


def run_models(models: Sequence[tuple[str | None, str | None, str | None]], tasks: Sequence[str | TaskConfig],
               opts: EvalOptions) -> list[ModelRun]:
    """``run`` for each ``(spec, pretrained, name)`` in turn with the same tasks and options. A model that
    fails (a download refused, weights that do not load, a task it breaks) is reported in its
    ``ModelRun.error`` and the others go on. Task and option mistakes stop before any model runs."""
    preflight(opts)
    plan(list(tasks), opts)
    out = []
    for spec, pretrained, name in models:
        one = dataclasses.replace(opts, pretrained=pretrained, model_name=name)
        entry = ModelRun(spec, pretrained, name)
        try:
            entry.evaluations = run(spec, tasks, one)
        except Exception as e:  # one model's failure must not stop the others
            entry.error = str(e) if isinstance(e, SparcEvalError) else f"{type(e).__name__}: {e}"
            opts.log(f"model {spec}" + (f" ({pretrained})" if pretrained else "") + f" failed: {entry.error}")
        out.append(entry)
    return out


MAX_NAME = 120  # characters of a model folder name (file systems allow 255 bytes per component)


def preflight(opts: EvalOptions) -> None:
    """Options checked before anything is loaded: seed, sizes, and (when writing) the output folder."""
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or not 0 <= opts.seed < 2**32:
        raise SparcEvalError(f"--seed {opts.seed!r}: expected an integer from 0 to {2**32 - 1}")
    if opts.batch_size < 1:
        raise SparcEvalError(f"--batch-size {opts.batch_size}: expected a positive number")
    if opts.num_workers is not None and opts.num_workers < 0:
        raise SparcEvalError(f"--num-workers {opts.num_workers}: expected 0 or more")
    if opts.limit is not None and opts.limit < 1:
        raise SparcEvalError(f"--limit {opts.limit}: expected a positive number of samples")
    if opts.role not in ROLES:
        raise SparcEvalError(f"--role {opts.role!r}: expected one of {', '.join(ROLES)}")
    if opts.predictions is not None and not Path(opts.predictions).is_file():
        raise SparcEvalError(f"--predictions {opts.predictions}: not a regular file; expected a captions JSON")
    if opts.write:
        writable_folder(Path(opts.output), "-o/--output")


def writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written in it, or ``SparcEvalError`` naming it."""
    if folder.exists() and not folder.is_dir():
        raise SparcEvalError(f"{what} {folder}: is a file; expected a folder for the results")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SparcEvalError(f"{what} {folder}: cannot write there ({e.strerror}); expected a writable folder") from None


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


def plan(tasks: Sequence[str | Path | TaskConfig], opts: EvalOptions) -> list[ResolvedTask]:
    """Step 1: every task to run, each resolved once (config, task type, reader)."""
    if not tasks and not opts.suite:
        raise SparcEvalError("nothing to run: give --task NAME (repeatable) or --suite NAME")
    names = [t for t in tasks if not isinstance(t, TaskConfig)]
    if names or opts.suite:
        names = plan_tasks(names, opts.suite, opts.include, opts.shard)
    return [ResolvedTask.of(t) for t in tasks if isinstance(t, TaskConfig)] + [
        resolve_task(n, include=opts.include, data_root=opts.data_root, overrides=opts.params) for n in names]


def identify(model: Any, opts: EvalOptions, session: _Session) -> ModelRef:
    """Step 2: the model's spec, result name and weights fingerprint, without loading it."""
    from .models import ModelAdapter, ModelIdentity, default_model_name, fingerprint
    from .names import slug

    name = opts.model_name or (default_model_name(model, opts.pretrained) if isinstance(model, str) else None)
    if name is not None and len(slug(name)) > MAX_NAME:
        raise SparcEvalError(f"model name {slug(name)[:40]!r}...: {len(slug(name))} characters; expected at most "
                             f"{MAX_NAME} (it names the results folder); pass a shorter --model-name")
    if isinstance(model, ModelAdapter):
        return ModelRef(model.identity.spec, opts.model_name or model.identity.name, model.identity.weights_sha256,
                        adapter=model, cacheable=opts.use_cache)
    if isinstance(model, str):
        return ModelRef(model, opts.model_name or default_model_name(model, opts.pretrained),
                        fingerprint(model, opts.pretrained), cacheable=opts.use_cache)
    if model is None:
        return ModelRef("none", opts.model_name or "predictions", "none", cacheable=opts.use_cache)
    from .models.python_adapter import wrap_module

    if opts.transform is None or opts.tokenizer is None:
        raise SparcEvalError("evaluate(nn.Module): pass transform= and tokenizer= with the module")
    spec = f"module:{type(model).__qualname__}"
    name = opts.model_name or type(model).__name__.lower()
    fp = sha256_json({"module": spec, "id": id(model), "time": time.time()})
    adapter = wrap_module(model, opts.transform, opts.tokenizer, identity=ModelIdentity(spec, None, name, fp),
                          device=session.device, precision=opts.precision)
    return ModelRef(spec, name, fp, adapter=adapter, cacheable=False)  # a one-off identity: never read again


@dataclass
class RunInfo:
    """How one task ran: its run key, start time, wall time and the engine's work (encoded/cached counts)."""

    run_key: str
    started: _dt.datetime
    wall_s: float
    engine: dict[str, int]


def run_one(task: ResolvedTask, instance: TaskType, ref: ModelRef, session: _Session, alone: bool) -> Evaluation:
    """Step 3: one task: skip an identical stored result, refuse another model's name, check the model
    can serve it, evaluate, then ``record`` and write. ``instance`` is ``task.build()`` (its data already
    read); ``alone``: the only task (unsupported raises)."""
    from .models.base import UnsupportedCapability
    from .task_types import EvalContext

    cfg, log, opts = task.config, session.log, session.opts
    run_key = _run_key(cfg, ref, opts)
    path = result_path(opts.output, ref.name, cfg.name)
    old = _identical_result(path, run_key, instance, opts.limit) if opts.write and not opts.overwrite else None
    if session.broadcast(old) is not None:
        log(f"{cfg.name}: identical result exists at {path}; skipped (use --overwrite to recompute)")
        return Evaluation(cfg.name, "skipped", old, path)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    model = session.adapter(ref) if instance.needs_model else ref.adapter
    clash = (_other_model(path, ref.spec, model.identity.weights_sha256 if model is not None else None)
             if session.write and not opts.overwrite else None)
    if session.broadcast(clash):
        raise SparcEvalError(clash)
    engine = session.current_engine
    if instance.needs_model:
        missing = [c for c in instance.requires if not model.supports(c)]
        if missing:
            return _unsupported(cfg.name, f"needs model outputs {missing}, which {model.identity.name!r} does not "
                                f"provide", alone, log)
        engine = session.engine(model, ref)
    ctx = EvalContext(engine=engine, seed=opts.seed, limit=opts.limit, progress=session.progress, log=log,
                      work_dir=path.parent if session.write else None,
                      predictions=Path(opts.predictions) if opts.predictions else None)
    stats_before = engine.stats.as_dict() if engine else {}
    try:
        with _progress.phase("scoring", bars=session.progress):
            res = instance.evaluate(model, ctx)
    except UnsupportedCapability as e:
        if alone:
            raise
        return _unsupported(cfg.name, str(e), alone, log)
    stats = {k: v - stats_before.get(k, 0) for k, v in engine.stats.as_dict().items()} if engine else {}
    rec = record(cfg, res, model, ref, session, RunInfo(run_key, started, time.perf_counter() - t0, stats))
    if session.write:
        with _progress.phase("write", bars=False) as ph:
            write_result(path, rec, res.records)
            ph.note = str(path)
    return Evaluation(cfg.name, "computed", rec, path if opts.write else None)


def record(cfg: TaskConfig, res, model, ref: ModelRef, session: _Session, info: RunInfo) -> ResultRecord:
    """Step 4: the typed result record of a ``TaskResult`` (metrics checked against the registry,
    bootstrap intervals computed, provenance filled)."""
    import torch

    from .metrics.registry import check_keys
    from .results.aggregate import intervals

    opts, engine = session.opts, session.current_engine
    check_keys(res.metrics, f"task {cfg.name}")
    with _progress.phase("bootstrap", bars=session.progress):
        ivals = {**res.intervals, **(intervals(res.records, res.aggregations, seed=opts.seed)
                                     if res.records and res.aggregations else {})}
    identity = model.identity if model is not None else None
    provenance = {"sparc_eval": _version(), "git": session.git, "torch": torch.__version__,
                  "python": platform.python_version(),
                  "world_size": engine.dist.world if engine is not None and engine.dist else 1,
                  "cache_dtype": engine.cache_dtype if engine is not None else None,
                  "host": platform.node(), "device": str(session.device), "precision": opts.precision,
                  "batch_size": opts.batch_size, "threads": torch.get_num_threads(),
                  "started": info.started.isoformat(timespec="seconds"), "wall_s": round(info.wall_s, 3),
                  "engine": info.engine,
                  "pid": os.getpid()}
    if opts.shard:
        provenance["shard"] = f"{opts.shard[0]}/{opts.shard[1]}"
    return ResultRecord(
        schema=SCHEMA,
        task=TaskInfo(cfg.name, cfg.type, cfg.version, cfg.config_sha256, cfg.groups, cfg.as_dict()),
        model=ModelInfo(ref.name, identity.spec if identity else ref.spec, identity.pretrained if identity else None,
                        identity.weights_sha256 if identity else None, identity.source if identity else None),
        dataset=DatasetInfo(res.dataset_fingerprint, cfg.dataset.get("name"), cfg.dataset["format"], res.n_total,
                            res.n_used, opts.limit, bool(opts.limit is not None and res.n_used < res.n_total)),
        seed=opts.seed, metrics=res.metrics, main_metric=res.main_metric, intervals=ivals, chance=res.chance,
        aggregations=res.aggregations, details=res.details,
        preprocessing=model.preprocessing if model is not None else {}, provenance=provenance, run_key=info.run_key,
        role=opts.role, seed_group=opts.seed_group or card_method(ref.spec))


def card_method(spec: str) -> str | None:
    """The seed group of a ``sparc:`` checkpoint folder with a model card: its ``card.json``'s ``method``."""
    import json

    if not spec.startswith("sparc:"):
        return None
    try:
        method = json.loads((Path(spec.split(":", 1)[1]).expanduser() / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    method = method.get("method") if isinstance(method, dict) else None
    return method if isinstance(method, str) and method else None


@dataclass
class _Session:
    """Per-call state: the process group, the device, what this rank may log and write, and the model
    and engine, built on first need and shared by the tasks."""

    opts: EvalOptions
    dist: Any
    device: Any
    log: Callable[[str], None]
    progress: bool
    write: bool
    git: str | None
    cache: Any = None
    reporter: _progress.Reporter = field(default_factory=_progress.Reporter)
    claimed: Path | None = None
    current_engine: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, opts: EvalOptions) -> _Session:
        from .engine import EmbeddingCache
        from .engine import distributed as dist
        from .models.base import check_precision, resolve_device

        info = dist.init_from_env(opts.device) if opts.distributed else None
        device, log, progress, write = opts.device, opts.log, opts.progress, opts.write
        if info is not None:
            device = dist.rank_device(info, device)
            if not info.main:  # rank 0 alone logs, shows progress and writes results
                log, progress, write = (lambda m: None), False, False
        check_precision(opts.precision)
        cache_root = Path(opts.cache_dir) / "embeddings" if opts.cache_dir else None
        reporter = _progress.current() if write or info is None else None  # the caller's, on the rank that logs
        reporter = reporter or _progress.Reporter(log, bars=progress and _progress.for_terminal())
        return cls(opts, info, resolve_device(device), log, progress, write, _git_revision(),
                   cache=EmbeddingCache(cache_root, warn=lambda m: log(f"warning: {m}")), reporter=reporter)

    def claim(self, ref: ModelRef) -> None:
        """Bind the results folder ``<output>/<name>/`` to this model before anything runs: the first run
        creates its identity file atomically (no two runs can both create it); a run of another model
        (other spec or weights fingerprint) is refused unless ``--overwrite``, which rebinds it. Runs of
        the same model (shards of a job array, other hosts on a shared disk) proceed."""
        clash = None
        if self.write:
            identity = {"spec": ref.spec, "fingerprint": ref.fingerprint}
            if self.opts.predictions:
                identity["predictions"] = sha256_file(self.opts.predictions)
            folder = result_path(self.opts.output, ref.name, "x").parent
            clash, created = bind_name(folder, identity, self.opts.overwrite)
            self.claimed = folder if created else None
        if self.broadcast(clash):
            raise SparcEvalError(clash)

    def release_unused(self) -> None:
        """Unbind a folder this run bound but wrote no result into (its model failed to load, say), so the
        name stays free for the model the user meant."""
        if self.claimed is not None and not any(p for p in self.claimed.glob("*.json") if not p.name.startswith(".")):
            (self.claimed / IDENTITY_FILE).unlink(missing_ok=True)
            try:
                self.claimed.rmdir()
            except OSError:
                pass  # not empty: leave it

    def broadcast(self, value):
        """``value`` as rank 0 has it (every rank decides alike); ``value`` itself without a group."""
        from . import distributed as dist

        return dist.broadcast(value, self.dist) if self.dist is not None else value

    def adapter(self, ref: ModelRef):
        """The model's adapter, loaded on first need."""
        opts = self.opts
        if ref.adapter is None:
            if ref.spec == "none":
                raise SparcEvalError("this task needs a model: pass --model")
            pre = {k: v for k, v in (opts.preprocessing or {}).items() if v is not None}
            with _progress.phase("model load", note=ref.spec + (f" ({opts.pretrained})" if opts.pretrained else ""),
                                 bars=self.progress):
                ref.adapter = load_model(ref.spec, opts.pretrained, device=self.device, precision=opts.precision,
                                         model_name=ref.name, seed=opts.seed, preprocessing=pre, dense=opts.dense)
        return ref.adapter

    def engine(self, model, ref: ModelRef):
        """The extraction engine, built on first need and shared by the tasks."""
        from .engine import Engine

        opts = self.opts
        if self.current_engine is None:
            self.current_engine = Engine(model, cache=self.cache if ref.cacheable else None, batch_size=opts.batch_size,
                                  num_workers=opts.num_workers, progress=self.progress, cache_dtype=opts.cache_dtype,
                                  dist=self.dist)
        return self.current_engine


IDENTITY_FILE = ".identity.json"


def bind_name(folder: Path, identity: dict, overwrite: bool) -> tuple[str | None, bool]:
    """Create ``folder/.identity.json`` holding ``identity`` (plus host and time) if it does not exist,
    atomically (a complete temp file hard-linked into place: exactly one of two racing runs wins).
    Returns (why the folder belongs to another model, or None; whether this call created the file)."""
    import json
    import socket
    import tempfile

    from .fileio import atomic_write_json

    path = folder / IDENTITY_FILE
    stamp = {**identity, "host": socket.gethostname(), "time": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    if overwrite:
        atomic_write_json(path, stamp)
        return None, True
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".identity.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o666 & ~umask())
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        os.unlink(tmp)
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (f"{path}: unreadable identity file of the results folder; delete it, or pass --overwrite to "
                f"bind the folder to this model"), False
    differ = [k for k in identity if held.get(k) != identity[k]]
    if not differ:
        return None, created
    label = {"spec": "spec", "fingerprint": "weights (weights_sha256 fingerprint)", "predictions": "predictions file"}
    return (f"{folder}: holds the result of another model: the folder is bound to "
            f"{', '.join(f'{label[k]} {str(held.get(k))[:24]!r}' for k in differ)} (by {held.get('host')} at "
            f"{held.get('time')}), this run has {', '.join(f'{label[k]} {str(identity[k])[:24]!r}' for k in differ)}; "
            f"pass --model-name NAME to keep both, or --overwrite to replace it"), False


def _run_key(cfg: TaskConfig, ref: ModelRef, opts: EvalOptions) -> str:
    """Hash of every input that changes the numbers of this (model, task) run."""
    pre = {k: v for k, v in (opts.preprocessing or {}).items() if v is not None}
    return sha256_json({"task": cfg.config_sha256, "model": ref.fingerprint, "spec": ref.spec, "name": ref.name,
                        "preprocessing": pre, "precision": opts.precision, "seed": opts.seed, "limit": opts.limit,
                        "dense": opts.dense, "cache_dtype": opts.cache_dtype,
                        "predictions": sha256_file(opts.predictions) if opts.predictions else None})


def _unsupported(task: str, why: str, alone: bool, log: Callable[[str], None]) -> Evaluation:
    if alone:
        raise SparcEvalError(f"task {task!r} {why}")
    log(f"{task}: not run: {why}")
    return Evaluation(task, "unsupported", reason=why)


def _identical_result(path: Path, run_key: str, task, limit: int | None) -> ResultRecord | None:
    """The stored result at ``path`` if it came from the same inputs and the same data, else None."""
    if not path.is_file():
        return None
    try:
        old = read_result(path)
    except SparcEvalError:
        return None
    if old.run_key != run_key or old.dataset.fingerprint != task.load_data(limit).fingerprint:
        return None
    return old


def _other_model(path: Path, spec: str, weights_sha256: str | None) -> str | None:
    """Why the result at ``path`` belongs to another model stored under the same name, else None."""
    if not path.is_file():
        return None
    try:
        old = read_result(path).model
    except SparcEvalError:
        return None
    new = {"spec": spec, "weights_sha256": weights_sha256}
    stored = {"spec": old.spec, "weights_sha256": old.weights_sha256}
    differ = [k for k, v in new.items() if v is not None and stored[k] is not None and stored[k] != v]
    if not differ:
        return None
    found = ", ".join(f"{k} {str(stored[k])[:16]!r}, this run {str(new[k])[:16]!r}" for k in differ)
    return (f"{path}: holds the result of another model under the name {old.name!r} ({found}); "
            f"pass --model-name NAME to keep both, or --overwrite to replace it")


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
