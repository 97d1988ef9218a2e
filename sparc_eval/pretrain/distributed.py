"""torch.distributed for training: the training device and process group from torchrun's environment, and
the tensor collectives the losses need. The group description (``DistInfo``), object gathering, barriers
and leaving the group are the evaluation engine's (``sparc_eval.engine.distributed``).

- ``gather_with_grad(x)``: all ranks' ``x`` concatenated along dim 0 (rank order), differentiable: the
  backward sums every rank's gradient for this rank's slice (``torch.distributed.nn.all_gather``), as
  open_clip's ``ClipLoss(gather_with_grad=True)``. Every rank then computes the same batch-wide loss, and
  DDP's gradient averaging turns the W-fold sum back into the exact gradient.
- ``gather(x)``: the same without gradient (padding masks).
- ``all_reduce_sum(x)`` / ``all_reduce_mean(x)``: over ranks, without gradient (counts of valid tokens,
  of captions; logged loss terms).

Without an initialised process group these are the identity and ``world_size()`` is 1, so losses work
unchanged in a single process.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from ..engine.distributed import DistInfo, info
from ..errors import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[b, ...] on each rank -> [W*b, ...] (rank order), differentiable. Identity without DDP."""
    if world_size() == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), dim=0)


def gather(x: torch.Tensor) -> torch.Tensor:
    """[b, ...] on each rank -> [W*b, ...] (rank order), without gradient (masks, ids). Identity without DDP."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (a new tensor, no gradient). Identity without DDP. Under NCCL ``x`` must be
    on this rank's GPU."""
    x = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(x) / world_size()


def training_device(device: str = "auto") -> torch.device:
    """The device of this process: ``auto`` (CUDA if available), ``cpu``, ``cuda`` (under torchrun the local
    rank's GPU, ``LOCAL_RANK``) or an explicit ``cuda:N``; a CUDA device becomes the current one."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if not device.startswith("cuda"):
        raise ConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use device: cpu")
    dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}") if device == "cuda" else torch.device(device)
    torch.cuda.set_device(dev)
    return dev


def init_from_env(device: str = "auto", timeout_s: int = 1800) -> tuple[DistInfo | None, torch.device]:
    """(the process group torchrun describes, or None in a single process; this process's device). Joins the
    group when ``WORLD_SIZE`` > 1: NCCL on CUDA, gloo on CPU. ``timeout_s`` bounds every collective, so it
    must exceed the longest time the other ranks wait for rank 0 (a periodic evaluation, a checkpoint)."""
    dev = training_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return info(), dev
