"""The training loop: ``Trainer(config).run()`` (what ``sparc-eval pretrain`` and ``torchrun -m sparc_eval.pretrain``
call).

- AdamW (no weight decay on biases, norms, gains and the temperature, as open_clip), cosine schedule with
  linear warm-up, optional global gradient-norm clipping, the temperature clamped to ``max_logit_scale``.
- Precision: fp32, or autocast bf16 (CPU/CUDA) / fp16 (CUDA, with a gradient scaler); losses always run
  in float32, outside autocast.
- DDP under torchrun (nccl on CUDA, gloo on CPU); batch-wide loss terms gather features with gradients,
  per-sample terms divide by all-reduced counts (``losses.py``), so every run computes the gradient of the
  same global batch whatever the number of processes.
- Gradient accumulation is exact, as open_clip's feature cache: the step's K micro-batches are first
  encoded without gradients; then each micro-batch is encoded again with gradients and the loss of the whole
  accumulated batch (the cached features, this micro-batch's live) is back-propagated. Encoder gradients
  sum to the full-batch gradient; the loss-side parameters (temperatures, loss heads) see the same gradient
  K times and are divided by K. Costs one extra forward pass per micro-batch.
- ``log.jsonl`` in the run folder: every ``log_every`` steps the loss terms (mean over ranks), learning
  rate, temperature, gradient norm, throughput and the samples skipped so far; evaluation results.
- Checkpoints every ``checkpoint_every`` steps, at the end and at ``stop_after`` (``checkpoint.py``);
  ``resume`` continues from the latest (or a given) checkpoint. On CPU with CSV/shapes data the resumed
  run is bit-identical to an uninterrupted one: the data of step s is a function of s, random choices
  (FILIP's token dropping) are seeded by the step, and model/optimizer/scheduler/RNG state is restored.
- The run folder holds one run: a new run refuses a folder that is not empty unless ``overwrite`` (which
  removes the old run's checkpoints and log); a resumed run drops the log lines and checkpoints of the
  steps after the one it resumes from.
- Periodic evaluation through the public ``api.evaluate`` with an adapter around the model in training
  (rank 0 alone, outside the process group; no files written, no embedding cache; the other ranks wait).
  The tasks are resolved when the trainer starts, so a bad task name fails before the first step.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import distributed as E
from ..errors import ConfigError
from ..fileio import atomic_write_text, sha256_json
from . import checkpoint as ckpt
from . import distributed as D
from .config import TrainConfig
from .data import (
    EpochSampler,
    PairDataset,
    ShardCounts,
    ShardStream,
    collate,
    expand_shards,
    micro_batch_size,
    read_csv_pairs,
    shapes_pairs,
)
from .losses import build_loss
from .model import DualEncoder, EncoderOutputs, build_tokenizer, default_preprocessing

if TYPE_CHECKING:
    from ..task_config import TaskConfig

LOG_FILE = "log.jsonl"
_SKIP_KEYS = tuple(ShardCounts().__dict__)


class TrainModule(nn.Module):
    """Encoder + loss in one module (what DDP wraps): encode a micro-batch under autocast, put it among the
    cached outputs of the other micro-batches, compute the loss in float32."""

    def __init__(self, encoder: DualEncoder, loss: nn.Module, device: torch.device, precision: str):
        super().__init__()
        self.encoder, self.loss = encoder, loss
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def encode(self, images: torch.Tensor, ids: torch.Tensor) -> EncoderOutputs:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.encoder(images, ids, need_global_image=self.loss.uses_global_image,
                               need_global_text=self.loss.uses_global_text, need_dense=self.loss.uses_dense)
        return out.float()

    def forward(self, images: torch.Tensor, ids: torch.Tensor, others: list[EncoderOutputs] | None = None,
                index: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
        out = self.encode(images, ids)
        if others is not None:
            out = EncoderOutputs.cat(others[:index] + [out] + others[index + 1:], scale_from=index)
        with torch.autocast(self.device_type, enabled=False):
            return self.loss(out, torch.Generator().manual_seed(seed))


def may_skip_parameters(encoder: DualEncoder, loss: nn.Module) -> bool:
    """Whether some parameter of encoder + loss may get no gradient in a step (DDP must then look for them):
    the loss says so, or the global image path (``h_v``) or a separate local temperature goes unused."""
    return (not loss.full_graph or (not loss.uses_global_image and encoder.h_v is not None)
            or (encoder.logit_scale_local is not None and not loss.uses_dense))


def cosine_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier for the step after ``s`` completed ones: linear warm-up to 1, then cosine to 0."""
    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
    return f


def _no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


# what may change between a run and its resumption (everything else must match)
_RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval", "device", "threads",
                      "output_dir")


class Trainer:
    """One training run of ``cfg``. ``resume``: False, True (the latest checkpoint in the run folder, if any)
    or a checkpoint/run folder. ``overwrite``: start afresh in a run folder that holds an old run (else
    refused). ``stop_after``: stop (with a checkpoint) after this many steps of this call."""

    def __init__(self, cfg: TrainConfig, resume: bool | str | Path = False, stop_after: int | None = None,
                 progress: bool = True, log: Callable[[str], None] = print, overwrite: bool = False):
        self.cfg, self.stop_after, self.progress = cfg, stop_after, progress
        self.dist, self.device = D.init_from_env(cfg.device)
        self.rank, self.world = (self.dist.rank, self.dist.world) if self.dist else (0, 1)
        self.is_main = self.rank == 0
        self.log = log if self.is_main else (lambda msg: None)
        dev = self.device
        if cfg.precision == "fp16" and dev.type != "cuda":
            raise ConfigError(f"precision fp16 needs a CUDA device (found {dev}); use bf16 or fp32")
        if not resume and not overwrite:
            self._check_empty_folder()
        self.eval_tasks = self._eval_tasks() if cfg.eval["every"] else []
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.encoder = DualEncoder(cfg.model)
        self.loss = build_loss(cfg.loss["name"], cfg.loss["params"], self.encoder.embed_dim)
        self.tokenizer = build_tokenizer(cfg.model)
        self.preprocessing = default_preprocessing(cfg.model)
        self.step = 0
        self.last_lr = cfg.optim["lr"]
        self.skipped = dict.fromkeys(_SKIP_KEYS, 0)
        self.shard_start = (0, 0)  # WebDataset: (epoch, shard ordinal) this rank starts at
        self.shard_positions: dict[int, tuple[int, int]] = {}  # WebDataset: worker -> shard it is reading
        self.n_samples: int | None = None  # CSV/shapes: pairs per epoch
        self.steps_per_epoch: int | None = None
        state, resumed_from = self._find_resume(resume)
        if state is not None:
            from ..checkpoint_io import load_into, load_state_dict

            load_into(self.encoder, load_state_dict(resumed_from / ckpt.MODEL_FILE), resumed_from, "this run's model")
            self.loss.load_state_dict(state["loss"])
        self.module = TrainModule(self.encoder, self.loss, dev, cfg.precision).to(dev)
        decay, no_decay = [], []
        for n, p in self.module.named_parameters():
            (no_decay if _no_decay(n, p) else decay).append(p)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                                            {"params": decay, "weight_decay": o["weight_decay"]}],
                                           lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(o["warmup_steps"], cfg.steps))
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.direct = [p for n, p in self.module.named_parameters() if n.startswith("loss.") or "logit_scale" in n]
        if state is not None:
            self._load_state(state)
            self.log(f"resumed from {resumed_from} (step {self.step})")
        self.ddp = None
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[dev.index] if dev.type == "cuda" else None,
                find_unused_parameters=may_skip_parameters(self.encoder, self.loss))

    # -- run folder, evaluation tasks, resume -------------------------------------------------------------
    def _check_empty_folder(self) -> None:
        out = self.cfg.output_dir
        held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        if held:
            raise ConfigError(f"output_dir {out}: the folder is not empty (it holds {', '.join(held[:4])}"
                              f"{', ...' if len(held) > 4 else ''}); pass --resume to continue its run, --overwrite "
                              f"to start afresh there, or choose another folder with -o")

    def _prepare_folder(self) -> None:
        """(rank 0) Make the run folder hold this run only: no log lines or checkpoints after ``self.step``."""
        out = self.cfg.output_dir
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_checkpoints_after(out, self.step)
        log = out / LOG_FILE
        if log.is_file():
            keep = []
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short when the run was killed
                    continue
                if isinstance(rec, dict) and rec.get("step", 0) <= self.step:
                    keep.append(line)
            atomic_write_text(log, "".join(line + "\n" for line in keep))
        atomic_write_text(out / "train_config.json", json.dumps(self.cfg.as_dict(), indent=2) + "\n")

    def _eval_tasks(self) -> list[TaskConfig]:
        """The ``eval.tasks`` as validated task configs (``eval.params`` applied)."""
        from ..api import plan_tasks
        from ..tasks import load_task

        ev = self.cfg.eval
        return [load_task(name, overrides=ev["params"]) for name in plan_tasks(ev["tasks"])]

    def _find_resume(self, resume) -> tuple[dict | None, Path | None]:
        if resume is False or resume is None:
            return None, None
        if resume is True:
            found = ckpt.list_checkpoints(self.cfg.output_dir)
            if not found:
                self.log(f"no checkpoint in {self.cfg.output_dir}: starting from scratch")
                return None, None
            where = found[-1][1]
        else:
            where = ckpt.resolve_checkpoint(resume, label="--resume")
        state = ckpt.load_training_state(where)
        old, new = state["config"], self.cfg.as_dict()
        diff = sorted(k for k in new if k not in _RESUMABLE_CHANGES and old.get(k) != new[k])
        if diff:
            raise ConfigError(f"--resume {where}: the config differs from the checkpoint's in {', '.join(diff)} "
                              f"(only {', '.join(_RESUMABLE_CHANGES)} may change when resuming)")
        return state, where

    def _load_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped.update(state.get("skipped", {}))
        positions = state.get("data", {}).get("shard_positions")
        if positions and len(positions) == self.world:
            self.shard_start = tuple(positions[self.rank])
        elif positions:
            self.log(f"resuming with {self.world} processes instead of {len(positions)}: the "
                     f"WebDataset shards of the current epoch are read from the start")
            self.shard_start = (min(p[0] for p in positions), 0)
        _set_rng_state(state["rng"])

    # -- data -------------------------------------------------------------------------------------------
    def loader(self) -> DataLoader:
        """This rank's training batches from the current step on: dicts of ``images``, ``ids``, ``skipped``
        (and ``position`` for WebDataset), ``accum_steps`` micro-batches per step."""
        from ..models.transforms import build_image_transform

        cfg, d = self.cfg, self.cfg.data
        transform = build_image_transform(self.preprocessing)
        workers = d["num_workers"]
        common = {"num_workers": workers, "collate_fn": collate(self.tokenizer),
                  "pin_memory": self.device.type == "cuda", "persistent_workers": workers > 0}
        if d["format"] == "webdataset":
            micro = micro_batch_size(cfg.batch_size, self.world, cfg.accum_steps)
            shards = expand_shards(d["shards"])
            per_rank = len(range(self.rank, len(shards), self.world))
            if workers > per_rank:
                self.log(f"data: {per_rank} shard(s) per process for {workers} DataLoader workers; "
                         f"{workers - per_rank} worker(s) stay idle")
            stream = ShardStream(shards, transform, cfg.seed, self.rank, self.world, d["image_keys"],
                                 d["caption_keys"], start=self.shard_start)
            return DataLoader(stream, batch_size=micro, **common)
        if d["format"] == "csv":
            pairs = read_csv_pairs(d["path"], d["image_root"], d["path_column"], d["caption_column"],
                                   per_image=d["captions"] == "per_image")
        else:
            pairs = shapes_pairs(d["root"], d["splits"])
        self.n_samples = len(pairs)
        sampler = EpochSampler(len(pairs), cfg.batch_size, cfg.seed, self.rank, self.world, cfg.accum_steps,
                               start_step=self.step)
        self.steps_per_epoch = sampler.steps_per_epoch
        return DataLoader(PairDataset(pairs, transform, cfg.seed), batch_sampler=sampler, **common)

    # -- one optimizer step ------------------------------------------------------------------------------
    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def accumulate(self, batches: list[dict]) -> dict[str, torch.Tensor]:
        """Forward/backward of one step's micro-batches (this rank's share): gradients of the global batch's
        loss in ``.grad`` (averaged over ranks by DDP); returns this rank's loss terms."""
        dev = self.device
        module = self.ddp or self.module
        seed = self.cfg.seed * 1_000_003 + self.step
        self.module.train()
        moved = [(b["images"].to(dev, non_blocking=True), b["ids"].to(dev, non_blocking=True)) for b in batches]
        if len(moved) == 1:
            terms = module(*moved[0], seed=seed)
            self._backward(terms["loss"])
        else:
            with torch.no_grad():
                cached = [self.module.encode(im, ids).detach() for im, ids in moved]
            for j, (im, ids) in enumerate(moved):
                sync = self.ddp is None or j == len(moved) - 1
                with contextlib.nullcontext() if sync else self.ddp.no_sync():
                    terms = module(im, ids, others=cached, index=j, seed=seed)
                    self._backward(terms["loss"])
            for p in self.direct:
                if p.grad is not None:
                    p.grad.div_(len(moved))
        return {k: v.detach() for k, v in terms.items()}

    def update(self) -> torch.Tensor:
        """Clip, optimizer and scheduler step, temperature clamp -> the gradient norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.grad is not None]
        clip = self.cfg.optim["grad_clip"]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        with torch.no_grad():
            limit = math.log(self.cfg.model.max_logit_scale)
            for p in (self.encoder.logit_scale, self.encoder.logit_scale_local):
                if p is not None:
                    p.clamp_(0, limit)
        self.step += 1
        return norm.detach()

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train to ``cfg.steps`` (or ``stop_after``) and return the last logged record (+ ``evaluation``)."""
        cfg = self.cfg
        if self.is_main:
            self._prepare_folder()
        loader = self.loader()
        it = iter(loader)
        start, last, evaluation = self.step, {}, {}
        t_window, n_window = time.perf_counter(), 0
        bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.name, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.is_main))
        self.log(f"training {cfg.name}: loss {cfg.loss['name']}, {cfg.model.arch}, steps {self.step}->{cfg.steps}, "
                 f"global batch {cfg.batch_size} on {self.world} process(es) ({self.device})")
        try:
            while self.step < cfg.steps:
                batches = [next(it) for _ in range(cfg.accum_steps)]
                for b in batches:
                    for k, v in b["skipped"].items():
                        self.skipped[k] += v
                    if "position" in b:
                        worker, epoch, ordinal = b["position"]
                        self.shard_positions[worker] = (epoch, ordinal)
                terms = self.accumulate(batches)
                norm = self.update()
                n_window += 1
                bar.update(1)
                stop = self.stop_after is not None and self.step - start >= self.stop_after
                final = self.step == cfg.steps or stop
                if self.step % cfg.log_every == 0 or final:
                    elapsed = time.perf_counter() - t_window
                    last = self._log_step(terms, norm, n_window * cfg.batch_size / max(elapsed, 1e-9),
                                          elapsed / n_window)
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                    t_window, n_window = time.perf_counter(), 0
                if self.step % cfg.checkpoint_every == 0 or final:
                    self.save()
                every = cfg.eval["every"]
                if every and (self.step % every == 0 or self.step == cfg.steps):
                    evaluation = self.evaluate()
                    t_window = time.perf_counter()
                if stop:
                    self.log(f"stopped after {self.step - start} steps at step {self.step} (resume with --resume)")
                    break
        finally:
            bar.close()
            del it, loader
        return {**last, "evaluation": evaluation, "step": self.step}

    def _log_step(self, terms: dict[str, torch.Tensor], norm: torch.Tensor, samples_per_s: float,
                  step_time: float) -> dict:
        keys = sorted(terms)
        values = E.all_reduce_mean(torch.stack([terms[k].float() for k in keys]))
        skipped = E.all_reduce_sum(torch.tensor([float(self.skipped[k]) for k in _SKIP_KEYS], device=self.device))
        with torch.no_grad():
            scale, local = self.encoder.temperatures()
        rec = {"step": self.step, "lr": self.last_lr, **{k: v.item() for k, v in zip(keys, values)},
               "logit_scale": scale.item(), "temperature": 1.0 / scale.item(), "grad_norm": norm.item(),
               "samples_per_s": round(samples_per_s, 2), "step_time_s": round(step_time, 4),
               "skipped": {k: int(v) for k, v in zip(_SKIP_KEYS, skipped.tolist()) if v}}
        if self.encoder.logit_scale_local is not None:
            rec["temperature_local"] = 1.0 / local.item()
        if self.steps_per_epoch:
            rec["epoch"] = round(self.step / self.steps_per_epoch, 3)
        self._append_log(rec)
        return rec

    def _append_log(self, rec: dict) -> None:
        if self.is_main:
            with (self.cfg.output_dir / LOG_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    # -- checkpoints and evaluation -----------------------------------------------------------------------
    def save(self) -> Path:
        """Write ``checkpoint-STEP`` (rank 0; all ranks wait for it)."""
        positions = None
        if self.cfg.data["format"] == "webdataset":  # each rank's resume point: the oldest shard in flight
            mine = min(self.shard_positions.values(), default=self.shard_start)
            positions = E.gather(mine, self.dist) if self.dist else [mine]
        out = ckpt.checkpoint_dir(self.cfg.output_dir, self.step)
        if self.is_main:
            state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                     "loss": self.loss.state_dict(), "rng": _rng_state(), "skipped": dict(self.skipped),
                     "data": {"n_samples": self.n_samples, "shard_positions": [list(p) for p in positions or []]},
                     "world_size": self.world, "config": self.cfg.as_dict()}
            out = ckpt.save_checkpoint(self.cfg.output_dir, self.step, self.encoder, preprocessing=self.preprocessing,
                                       loss=self.cfg.loss["name"], train_config=self.cfg.as_dict(),
                                       training_state=state)
            if self.cfg.keep_checkpoints:
                ckpt.prune_checkpoints(self.cfg.output_dir, self.cfg.keep_checkpoints)
        E.barrier(self.dist)
        return out

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Metrics of the model in training on ``eval.tasks`` (rank 0, outside the process group; nothing
        written), also logged; the other ranks wait."""
        metrics: dict[str, dict[str, float]] = {}
        if self.is_main:
            from ..api import evaluate
            from ..models.base import ModelIdentity
            from ..models.sparc_adapter import wrap

            ev, cfg = self.cfg.eval, self.cfg
            identity = ModelIdentity(f"sparc:{cfg.output_dir}", str(self.step), f"{cfg.name}-step{self.step}",
                                     sha256_json({"run": str(cfg.output_dir), "step": self.step, "time": time.time()}))
            self.encoder.eval()
            try:
                adapter = wrap(self.encoder, self.tokenizer, self.preprocessing, identity, self.device, cfg.precision)
                evals = evaluate(adapter, self.eval_tasks, write=False, progress=False, use_cache=False,
                                 batch_size=ev["batch_size"], limit=ev["limit"], seed=cfg.seed, device=str(self.device),
                                 precision=cfg.precision, num_workers=cfg.data["num_workers"], distributed=False,
                                 log=lambda m: None)
            finally:
                self.encoder.train()
            metrics = {e.task: e.metrics for e in evals}
            self._append_log({"step": self.step, "eval": metrics})
            self.log(f"step {self.step}: " + "; ".join(
                f"{t}: {e.main_metric} {e.metrics[e.main_metric]:.2f}" for t, e in zip(metrics, evals)))
        E.barrier(self.dist)
        return metrics


def train(cfg: TrainConfig, resume: bool | str | Path = False, stop_after: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print, overwrite: bool = False) -> dict:
    """Run ``cfg`` (joining torchrun's process group when there is one) and leave the group afterwards."""
    try:
        return Trainer(cfg, resume=resume, stop_after=stop_after, progress=progress, log=log,
                       overwrite=overwrite).run()
    finally:
        E.shutdown()
