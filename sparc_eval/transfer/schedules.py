"""Training schedules and recipe optimiser settings for the transfer tasks.

Iteration-based (mmengine ``IterBasedTrainLoop``); ``batch_size`` is images per step over all GPUs
(each of ``W`` torchrun processes takes ``batch_size / W``). AdamW throughout.

Detection (Mask R-CNN / Faster R-CNN):

========  ========  =====  ======  ==================  ==============================================
preset    iters     batch  warmup  lr steps (x0.1)     meaning
========  ========  =====  ======  ==================  ==============================================
quick     20        2      5       none                smoke check (tests, CI)
1x        90,000    16     250     60,000 / 80,000     12 COCO epochs (mmdet's 1x length)
100e      184,375   64     250     163,889 / 177,546   ViTDet's LSJ 100-epoch reference
========  ========  =====  ======  ==================  ==============================================

Segmentation (UperNet, linear head): poly decay (power 1) after a linear warm-up.

========  ========  =====  ======  ===============================================================
preset    iters     batch  warmup  meaning
========  ========  =====  ======  ===============================================================
quick     20        2      5       smoke check
1x        80,000    16     1,500   mmseg's 80k schedule (Pascal VOC)
2x        160,000   16     1,500   mmseg's 160k schedule (ADE20K UperNet reference)
========  ========  =====  ======  ===============================================================

Recipe defaults (lr, weight decay): Mask/Faster R-CNN 1e-4, 0.1 (ViTDet); UperNet 6e-5, 0.01 (mmseg's
ViT UperNet); linear head 1e-3, 1e-4. ``--param iters=N`` rescales the lr steps proportionally and
caps the warm-up at N.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    iters: int
    batch_size: int
    warmup_iters: int
    milestones: tuple[int, ...]
    policy: str
    checkpoint_interval: int
    log_interval: int


DETECTION = {
    "quick": Schedule(20, 2, 5, (), "step", 20, 5),
    "1x": Schedule(90_000, 16, 250, (60_000, 80_000), "step", 5_000, 50),
    "100e": Schedule(184_375, 64, 250, (163_889, 177_546), "step", 5_000, 50),
}
SEGMENTATION = {
    "quick": Schedule(20, 2, 5, (), "poly", 20, 5),
    "1x": Schedule(80_000, 16, 1_500, (), "poly", 8_000, 50),
    "2x": Schedule(160_000, 16, 1_500, (), "poly", 16_000, 50),
}
RECIPE_OPTIM = {"mask_rcnn": (1e-4, 0.1), "faster_rcnn": (1e-4, 0.1), "upernet": (6e-5, 0.01),
                "linear": (1e-3, 1e-4)}


def resolve(presets: dict[str, Schedule], params: dict, recipe: str, world_size: int) -> dict:
    """The schedule of ``params['schedule']`` with the ``iters``/``batch_size``/``lr``/``weight_decay``/
    ``warmup_iters`` overrides applied -> a plain dict (recorded in the result)."""
    name = params["schedule"]
    if name not in presets:
        raise ConfigError(f"--param schedule={name!r}: expected one of {', '.join(presets)}")
    s = presets[name]
    iters = int(params.get("iters") or s.iters)
    batch = int(params.get("batch_size") or s.batch_size)
    if iters < 1 or batch < 1:
        raise ConfigError(f"--param iters={iters} / batch_size={batch}: expected positive numbers")
    if batch % world_size:
        raise ConfigError(f"--param batch_size={batch}: not divisible by the {world_size} torchrun processes")
    lr, wd = RECIPE_OPTIM[recipe]
    warmup = s.warmup_iters if params.get("warmup_iters") is None else int(params["warmup_iters"])
    out = asdict(s)
    out.update(name=name, iters=iters, batch_size=batch, batch_per_gpu=batch // world_size, world_size=world_size,
               lr=float(params.get("lr") or lr), weight_decay=float(wd if params.get("weight_decay") is None
                                                                   else params["weight_decay"]),
               warmup_iters=min(warmup, iters),
               milestones=[max(1, round(m * iters / s.iters)) for m in s.milestones],
               checkpoint_interval=min(s.checkpoint_interval, iters), log_interval=min(s.log_interval, iters))
    return out
