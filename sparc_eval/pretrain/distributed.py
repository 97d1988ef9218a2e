"""torch.distributed for training: the training device and the process group from torchrun's environment.
The collectives (object and tensor) are the floor-0 ``sparc_eval.distributed``'s.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from ..distributed import DistInfo, info
from ..errors import ConfigError


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
