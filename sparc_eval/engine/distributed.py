"""Data-parallel evaluation on torch.distributed (``torchrun``): NCCL on GPUs, gloo on CPUs.

Every rank runs the same program. Extraction work is split by batch: in the single-process batch
order, rank r encodes batches r, r+n, r+2n, ... (same batch shapes as a single process), and the
outputs of each group of n batches are gathered to every rank in order, so all ranks hold the same
embeddings, compute the same metrics, and rank 0 alone writes the results. The embedding cache is
written by one rank per filesystem (rank 0 when the cache folder is shared, one rank per node when it
is node-local) and each rank reads only its own filesystem. With one thread per process this equals
a single-process run bit for bit.
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


def init_from_env(device: str | None) -> DistInfo | None:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); no-op otherwise.

    Returns the group info; with CUDA available and no explicit device, the rank's GPU is
    ``cuda:LOCAL_RANK`` (NCCL), otherwise gloo on CPU.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device in (None, "auto") or str(device).startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info()


def rank_device(d: DistInfo, device: str | None) -> str | None:
    """The device of this rank: its local GPU under NCCL (``cuda`` or ``cuda:N`` as asked means the
    rank's own GPU, ``cuda:LOCAL_RANK``, as every rank receives the same option), else what was asked."""
    if d.backend == "nccl" and (device in (None, "auto") or str(device).split(":")[0] == "cuda"):
        return f"cuda:{d.local_rank}"
    return device


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
