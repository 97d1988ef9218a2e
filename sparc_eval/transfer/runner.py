"""Running a generated config through mmengine's Runner: work folder, resume, torchrun, provenance.

Files (``result_dir`` is the folder of the result JSON; without one a temporary folder is used and
removed):

- ``<task>.mmengine.py``: the generated config, beside the result. The live-tower key is blanked, so
  the file also runs with mmengine's own tools (the backbone then loads the model from its spec);
- ``<task>.mmengine/<config sha256[:12]>/``: mmengine's work folder (checkpoints ``iter_N.pth``,
  ``last_checkpoint``, text logs). One folder per config (log level aside), so a run that was killed
  resumes from its last checkpoint (mmengine's ``resume``, which also advances the data loader) and a
  changed config never resumes a stale run. No JSON files are written there (results folders are
  scanned for JSON).

Under torchrun (``WORLD_SIZE`` > 1) the Runner uses mmengine's ``pytorch`` launcher: NCCL on CUDA,
gloo on CPU; metrics are gathered by mmengine and per-image records broadcast from rank 0.
"""
from __future__ import annotations

import copy
import hashlib
import os
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


def run(cfg: dict, *, task: str, result_dir: Path | None, resume: bool, log) -> TransferRun:
    """Train then test ``cfg`` with mmengine's Runner (see the module docstring for the files)."""
    from mmengine.config import Config
    from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
    from mmengine.runner import Runner, find_latest_checkpoint

    from . import registry  # noqa: F401 - registers our components with mmengine
    from .backbone import TransferBackbone, release

    stable = _stable(cfg)
    sha = sha256_json({k: v for k, v in stable.items() if k != "log_level"})
    tmp = None
    if result_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="sparc-eval-transfer-"))
        base, work = tmp, tmp / "work"
    else:
        base, work = Path(result_dir), Path(result_dir) / f"{task}.mmengine" / sha[:12]
    work.mkdir(parents=True, exist_ok=True)
    config_path = base / f"{task}.mmengine.py"
    resumed_from = find_latest_checkpoint(str(work)) if resume and (work / "last_checkpoint").is_file() else None
    if is_main_process():
        Config({**stable, "work_dir": str(work)}).dump(str(config_path))
    run_cfg = {**cfg, "work_dir": str(work), "resume": resumed_from is not None,
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
        checkpoint = find_latest_checkpoint(str(work))
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
