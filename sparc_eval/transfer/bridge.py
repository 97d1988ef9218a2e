"""From a loaded model adapter to the backbone part of a transfer config.

``prepare`` takes the vision tower out of the adapter (a copy, see ``towers``), hands it to the
backbone the Runner will build, and returns what the config needs: the backbone config, the tower's
output description, the model's own normalisation (mean/std on the 0-255 scale mmdet/mmseg use;
images are converted BGR -> RGB first), the padding divisor and the weights hash before training.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelLoadError
from .backbone import hand_over
from .config import backbone_config
from .runner import weights_sha256
from .towers import pad_divisor, tower_from_adapter


@dataclass
class PreparedBackbone:
    backbone: dict
    tower: dict
    mean: list[float]
    std: list[float]
    pad_divisor: int
    sha256_before: str


def prepare(adapter, *, frozen: bool, final_norm: bool = False, grad_checkpointing: bool = False,
            seed: int = 0) -> PreparedBackbone:
    pre = getattr(adapter, "preprocessing", None) or {}
    if "mean" not in pre or "std" not in pre:
        raise ModelLoadError(f"model {adapter.identity.name!r}: its preprocessing records no mean/std, which "
                             f"transfer needs to normalise images as the model was trained")
    tower = tower_from_adapter(adapter, final_norm=final_norm)
    tower.float().cpu()
    sha = weights_sha256(tower)
    key = hand_over(tower)
    ident = adapter.identity
    cfg = backbone_config(spec=ident.spec, pretrained=ident.pretrained, seed=seed, tower_key=key, frozen=frozen,
                          final_norm=final_norm, grad_checkpointing=grad_checkpointing)
    return PreparedBackbone(cfg, tower.describe(), [255 * float(m) for m in pre["mean"]],
                            [255 * float(s) for s in pre["std"]], pad_divisor(tower), sha)
