"""The backbone that mmdetection and mmsegmentation build from a config: a ``VisionTower`` inside.

The task hands the tower it built from the already loaded model to the backbone through
``hand_over`` (a process-local table keyed by a random id), so the model is loaded once and the
generated config stays plain text. The same config also runs outside sparc-eval (``mim train`` or
mmdet's ``tools/train.py`` with the saved ``*.mmengine.py``): with no live tower under the key, the
backbone loads ``model``/``pretrained`` itself through ``sparc_eval.models.load_model`` (random-init
models with the recorded ``seed``).

Frozen backbones (``frozen=True``) get ``requires_grad=False``, stay in eval mode, run under
``torch.no_grad()`` and so keep their weights bit-identical; ``init_weights`` never touches the
pretrained weights.
"""
from __future__ import annotations

import uuid

import torch
from torch import nn

from .towers import VisionTower, tower_from_adapter

_LIVE: dict[str, VisionTower] = {}


def hand_over(tower: VisionTower) -> str:
    """Register ``tower`` for the next backbone built with the returned key."""
    key = uuid.uuid4().hex
    _LIVE[key] = tower
    return key


def release(key: str) -> None:
    """Forget a handed-over tower that no backbone took (a failed build)."""
    _LIVE.pop(key, None)


class TransferBackbone(nn.Module):
    """mmdet/mmseg backbone: images ``[B, 3, H, W]`` -> tuple of the tower's feature maps."""

    def __init__(self, model: str | None = None, pretrained: str | None = None, seed: int = 0,
                 tower_key: str | None = None, frozen: bool = True, final_norm: bool = False,
                 grad_checkpointing: bool = False):
        super().__init__()
        tower = _LIVE.pop(tower_key, None) if tower_key else None
        if tower is None:
            if model is None:
                from ..errors import ConfigError

                raise ConfigError("TransferBackbone: no live tower under tower_key and no model spec to load")
            from ..models import load_model

            tower = tower_from_adapter(load_model(model, pretrained, device="cpu", seed=seed), final_norm)
        self.tower = tower
        self.frozen = frozen
        if frozen:
            tower.requires_grad_(False)
        tower.grad_checkpointing = bool(grad_checkpointing and not frozen)

    def init_weights(self) -> None:
        """Keep the model's own weights (mmengine calls this on every child of the detector)."""

    def train(self, mode: bool = True) -> TransferBackbone:
        super().train(mode)
        if self.frozen:
            self.tower.eval()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.frozen:
            with torch.no_grad():
                return tuple(self.tower(images))
        return tuple(self.tower(images))
