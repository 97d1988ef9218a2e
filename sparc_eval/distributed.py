"""torch.distributed primitives shared by evaluation and training (floor 0).

The group description (``DistInfo``, ``info``), object collectives (``gather``, ``broadcast``),
``barrier``, ``first_on_filesystem`` and leaving the group (``shutdown``); and the tensor collectives the
losses need:

- ``gather_with_grad(x)``: all ranks' ``x`` concatenated along dim 0 (rank order), differentiable: the
  backward sums every rank's gradient for this rank's slice (``torch.distributed.nn.all_gather``), as
  open_clip's ``ClipLoss(gather_with_grad=True)``. Every rank then computes the same batch-wide loss, and
  DDP's gradient averaging turns the W-fold sum back into the exact gradient.
- ``gather_tensor(x)``: the same without gradient (padding masks).
- ``all_reduce_sum(x)`` / ``all_reduce_mean(x)``: over ranks, without gradient (counts of valid tokens,
  of captions; logged loss terms).

Without an initialised process group the tensor collectives are the identity and ``world_size()`` is 1,
so losses work unchanged in a single process. Joining a group is the caller's: ``engine.distributed``
(evaluation) and ``pretrain.distributed`` (training).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo | None:
    """The current process group, or None when not running distributed (or world size 1)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                    dist.get_backend())


def gather(obj, d: DistInfo) -> list:
    """``all_gather_object``: every rank gets the list of every rank's ``obj`` (rank order)."""
    out: list = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, d: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def first_on_filesystem(folder: Path, d: DistInfo | None) -> bool:
    """Whether this rank is the lowest-ranked of those that see ``folder`` as the same directory.

    Every rank drops a probe file into ``folder`` and looks for the others' probes. On a shared
    filesystem only rank 0 answers True; with node-local folders, one rank per node does, so each
    node's copy gets written and every rank reads only files on its own disk.
    """
    if d is None:
        return True
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    probe = folder / f".rank-probe-{token}"
    probe.touch()
    try:
        tokens = gather(token, d)
        seen = [r for r, t in enumerate(tokens) if (folder / f".rank-probe-{t}").exists()]
        dist.barrier()
    finally:
        probe.unlink(missing_ok=True)
    return min(seen) == d.rank


def barrier(d: DistInfo | None) -> None:
    if d is not None:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[b, ...] on each rank -> [W*b, ...] (rank order), differentiable. Identity without DDP."""
    if world_size() == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), dim=0)


def gather_tensor(x: torch.Tensor) -> torch.Tensor:
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
