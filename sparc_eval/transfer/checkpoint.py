"""mmengine checkpoints that hold tensors and plain Python values only.

mmengine's Runner puts ``HistoryBuffer`` objects (numpy arrays inside) and numpy scalars into its
checkpoints, which ``torch.load(weights_only=True)`` refuses. ``PlainCheckpointHook`` rewrites the
checkpoint just before it is saved: numpy values become Python numbers or lists, ``Counter``s plain
dicts, history buffers ``{"__history_buffer__": {...}}`` records; after a checkpoint is loaded (on
resume) the history buffers are rebuilt. So our detector and segmenter checkpoints load under
``weights_only=True`` (mmengine itself calls ``torch.load`` without the argument, which is
``weights_only=True`` on torch >= 2.6, which ``params.require_stack`` insists on), and resuming works without
allowing any extra globals.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

_BUFFER = "__history_buffer__"


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy values, counters and history buffers replaced by plain values; raises
    ``TypeError`` naming the path of anything else that is not a tensor or plain value."""
    if isinstance(obj, np.generic):  # before the plain types: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.device,
                                       torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, HistoryBuffer):
        return {_BUFFER: {"log_history": obj._log_history.tolist(), "count_history": obj._count_history.tolist(),
                          "max_length": int(obj.max_length)}}
    if isinstance(obj, Counter):
        return {k: to_plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, OrderedDict):
        out = OrderedDict((k, to_plain(v, f"{where}.{k}")) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = to_plain(obj._metadata, f"{where}._metadata")
        return out
    if isinstance(obj, dict):
        return {k: to_plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return out if isinstance(obj, list) else tuple(out)
    raise TypeError(f"{where}: {type(obj).__qualname__} cannot be stored in a weights_only checkpoint")


def restore(obj: Any) -> Any:
    """Rebuild the history buffers ``to_plain`` flattened (in a message hub state; the rest stays plain)."""
    if isinstance(obj, dict):
        if set(obj) == {_BUFFER}:
            return HistoryBuffer(**obj[_BUFFER])
        return {k: restore(v) for k, v in obj.items()}
    return obj


class PlainCheckpointHook(Hook):
    """Keeps mmengine checkpoints loadable with ``torch.load(weights_only=True)`` (runs last)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        plain = to_plain(checkpoint)
        checkpoint.clear()
        checkpoint.update(plain)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "message_hub" in checkpoint:
            checkpoint["message_hub"] = restore(checkpoint["message_hub"])
