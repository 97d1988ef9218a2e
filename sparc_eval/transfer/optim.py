"""Layer-wise learning-rate decay for the transferred backbone (BEiT / ViTDet style).

Parameter ``p`` of the tower at layer ``l`` (see ``VisionTower.layer_id``: 0 embeddings, ``i + 1``
block ``i``, ``L + 1`` final norm) trains with ``lr * decay ** (L + 1 - l)``; everything outside the
tower (pyramid, heads) with ``lr``. Biases, 1-d weights (norms) and class/position embeddings get no
weight decay. Frozen parameters (``requires_grad=False``) are left out of the optimizer. Groups are
formed per (layer, decay?) pair and carry ``layer_id`` and ``lr_scale`` for the record.
"""
from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from .backbone import TransferBackbone


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(layer_decay=0.7)``; ``layer_decay=1`` is plain fine-tuning."""

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        decay = float(self.paramwise_cfg.get("layer_decay", 1.0))
        towers = {name: m.tower for name, m in module.named_modules() if isinstance(m, TransferBackbone)}
        groups: dict[tuple, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer, scale, no_decay = "head", 1.0, param.ndim <= 1 or name.endswith(".bias")
            for prefix, tower in towers.items():
                if name.startswith(f"{prefix}.tower."):
                    rel = name[len(prefix) + len(".tower."):]
                    layer = tower.layer_id(rel)
                    scale = decay ** (tower.num_layers + 1 - layer)
                    no_decay = tower.no_weight_decay(rel, param)
            group = groups.get((layer, no_decay))
            if group is None:
                group = groups[(layer, no_decay)] = {
                    "params": [], "lr": self.base_lr * scale, "lr_scale": scale, "layer_id": layer,
                    "weight_decay": 0.0 if no_decay else self.base_wd}
            group["params"].append(param)
        params.extend(groups.values())
