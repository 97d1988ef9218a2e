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

import torch
import torch.distributed as dist

from ..distributed import DistInfo, info


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
