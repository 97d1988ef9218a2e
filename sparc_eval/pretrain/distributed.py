"""torch.distributed helpers for training: process-group setup from torchrun's environment, and the two
collectives the losses need.

- ``gather_with_grad(x)``: all ranks' ``x`` concatenated along dim 0 (rank order), differentiable: the
  backward sums every rank's gradient for this rank's slice (``torch.distributed.nn.all_gather``), as
  open_clip's ``ClipLoss(gather_with_grad=True)``. Every rank then computes the same batch-wide loss, and
  DDP's gradient averaging turns the W-fold sum back into the exact gradient.
- ``gather(x)``: the same without gradient (padding masks).
- ``all_reduce_sum(x)``: a sum over ranks, without gradient (counts of valid tokens, of captions).

Without an initialised process group both are the identity and ``world_size()`` is 1, so losses work
unchanged in a single process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import ConfigError


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


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
    """Sum of ``x`` over ranks (a new tensor, no gradient). Identity without DDP."""
    x = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(x) / world_size()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@dataclass
class DistInfo:
    """Where this process runs: its rank, the world size, its local rank and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str = "auto", timeout_s: int = 1800) -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; nccl on CUDA,
    gloo on CPU), or return a single-process ``DistInfo``. ``device``: auto, cpu, cuda (the local rank's
    GPU under torchrun) or an explicit cuda:N."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank_ = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine; use device: cpu")
        dev = torch.device(f"cuda:{local}") if device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise ConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if world > 1 and not is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank_, world_size=world, local_rank=local, device=dev)


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
