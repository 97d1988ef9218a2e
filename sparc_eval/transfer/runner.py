"""Running a generated config through mmengine's Runner: work folder, resume, torchrun, provenance.

Files (``result_dir`` is the folder of the result JSON; without one a temporary folder is used and
removed):

- ``<task>.mmengine.py``: the generated config, beside the result. The live-tower key is blanked, so
  the file also runs with mmengine's own tools (the backbone then loads the model from its spec);
- ``<task>.mmengine/<KEY>/``: mmengine's work folder (checkpoints ``iter_N.pth``,
  ``last_checkpoint``, text logs). ``KEY``: a hash of the config (log level aside) and of the backbone's
  weights before training (a model spec such as ``sparc:RUN`` can name other weights later), so a
  run that was killed resumes from its last checkpoint (mmengine's ``resume``, which also advances the
  data loader) and a changed config or model never resumes a stale run. ``last_checkpoint`` is followed
  only to a checkpoint file inside the work folder. No JSON files are written there (results folders are
  scanned for JSON).

Under torchrun (``WORLD_SIZE`` > 1) the Runner uses mmengine's ``pytorch`` launcher: NCCL on CUDA,
gloo on CPU; metrics are gathered by mmengine and per-image records broadcast from rank 0.
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import sha256_json


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launcher() -> str:
    """``pytorch`` under torchrun with several processes, else ``none``."""
    return "pytorch" if world_size() > 1 else "none"


def amp_dtype(amp: str, precision: str, cuda: bool) -> str | None:
    """AMP dtype for mmengine's ``AmpOptimWrapper`` (``None``: fp32). ``auto``: on CUDA, the model's
    ``--precision`` if it is fp16/bf16, else bfloat16 where supported, else float16; never on CPU."""
    if not cuda or amp == "off":
        return None
    if amp in ("fp16", "bf16"):
        return {"fp16": "float16", "bf16": "bfloat16"}[amp]
    if precision in ("fp16", "bf16"):
        return {"fp16": "float16", "bf16": "bfloat16"}[precision]
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def weights_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class TransferRun:
    """What a finished run gives the task: metrics, the evaluator's metric object (details, records)
    and provenance (config file, work folder, checkpoint, iterations, backbone hash after training)."""

    metrics: dict[str, float]
    metric: Any
    provenance: dict = field(default_factory=dict)


def _stable(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    out["model"]["backbone"]["tower_key"] = None
    return out


def work_key(cfg: dict, backbone_sha256: str) -> tuple[str, str]:
    """(sha256 of the config, the live-tower key and log level aside; the work folder's key: a hash of that
    and of the backbone's weights)."""
    sha = sha256_json({k: v for k, v in _stable(cfg).items() if k != "log_level"})
    return sha, sha256_json({"config": sha, "backbone_sha256": backbone_sha256})


_CHECKPOINT_NAME = re.compile(r"^(iter|epoch)_\d+\.pth$")


def latest_checkpoint(work: Path) -> Path | None:
    """The checkpoint mmengine's ``last_checkpoint`` names, if it is a checkpoint file of ``work`` itself
    (mmengine records an absolute path: a moved results folder is found by the file name)."""
    marker = work / "last_checkpoint"
    if not marker.is_file():
        return None
    named = Path(marker.read_text(encoding="utf-8").strip())
    if not _CHECKPOINT_NAME.match(named.name):
        return None
    found = work / named.name
    return found if found.is_file() and not found.is_symlink() else None


def run(cfg: dict, *, task: str, result_dir: Path | None, resume: bool, backbone_sha256: str, log) -> TransferRun:
    """Train then test ``cfg`` with mmengine's Runner (see the module docstring for the files).
    ``backbone_sha256``: ``weights_sha256`` of the backbone's tower before training."""
    from mmengine.config import Config
    from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
    from mmengine.runner import Runner

    from . import registry  # noqa: F401 - registers our components with mmengine
    from .backbone import TransferBackbone, release

    stable = _stable(cfg)
    sha, key = work_key(cfg, backbone_sha256)
    tmp = None
    if result_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="sparc-eval-transfer-"))
        base, work = tmp, tmp / "work"
    else:
        base, work = Path(result_dir), Path(result_dir) / f"{task}.mmengine" / key[:12]
    work.mkdir(parents=True, exist_ok=True)
    config_path = base / f"{task}.mmengine.py"
    resumed_from = latest_checkpoint(work) if resume else None
    if is_main_process():
        Config({**stable, "work_dir": str(work)}).dump(str(config_path))
    run_cfg = {**cfg, "work_dir": str(work), "resume": resumed_from is not None,
               "load_from": str(resumed_from) if resumed_from else None,
               "experiment_name": f"{task}-{uuid.uuid4().hex[:8]}"}
    if resumed_from:
        log(f"{task}: resuming from {resumed_from}")
    runner = None
    try:
        runner = Runner.from_cfg(Config(run_cfg))
        runner.train()
        metrics = runner.test()
        metric = runner.test_loop.evaluator.metrics[0]
        extra = [getattr(metric, "records", None), getattr(metric, "per_class", None), getattr(metric, "details", None)]
        if is_distributed():
            broadcast_object_list(extra)
        metric.records, metric.per_class, metric.details = extra
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        backbone = next(m for m in model.modules() if isinstance(m, TransferBackbone))
        checkpoint = latest_checkpoint(work)
        provenance = {
            "config_file": config_path.name if tmp is None else None,
            "config_sha256": sha,
            "work_dir": str(work.relative_to(base)) if tmp is None else None,
            "checkpoint": str(Path(checkpoint).relative_to(base)) if checkpoint and tmp is None else None,
            "iterations": int(runner.iter),
            "resumed_from": str(Path(resumed_from).relative_to(base)) if resumed_from and tmp is None else None,
            "world_size": world_size(),
            "backbone_sha256_after": weights_sha256(backbone.tower),
        }
        return TransferRun({k: float(v) for k, v in metrics.items()}, metric, provenance)
    finally:
        release(cfg["model"]["backbone"]["tower_key"])
        if runner is not None:
            for handler in list(runner.logger.handlers):
                handler.close()
                runner.logger.removeHandler(handler)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
