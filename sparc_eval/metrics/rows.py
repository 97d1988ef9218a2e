"""Row-block access to an embedding matrix, so metrics can run on data that does not fit in memory.

A *row source* has ``n`` (number of rows) and ``read(start, stop) -> Tensor[stop - start, D]``
(float32). ``TensorRows`` wraps an in-memory tensor; the engine provides sources that stream rows
from the on-disk embedding cache.
"""
from __future__ import annotations

from typing import Protocol

import torch


class RowSource(Protocol):
    n: int

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) as a float32 tensor."""


class TensorRows:
    """Rows of an in-memory tensor (views; no copy for float32)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self.n = tensor.shape[0]

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.tensor[start:stop].float()


def as_rows(x) -> RowSource:
    """A tensor becomes ``TensorRows``; a row source is returned as is."""
    return TensorRows(x) if isinstance(x, torch.Tensor) else x
