"""Task parameters shared by the detection and segmentation transfer task types (no heavy imports)."""
from __future__ import annotations

import importlib.util
import re

from ..errors import SparcEvalError
from ..params import Param

MIN_TORCH = (2, 6)  # from here torch.load defaults to weights_only, which makes mmengine's resume safe
STACK = {"mmengine": "mmengine", "mmcv._ext": "mmcv 2.1.0 with its compiled ops", "mmdet": "mmdet",
         "mmseg": "mmsegmentation"}

COMMON = {
    "backbone": Param("str", "frozen", "frozen (weights bit-identical after training) or finetune",
                      choices=("frozen", "finetune")),
    "layer_decay": Param("float", 0.7, "layer-wise lr decay of a fine-tuned backbone (1 = none)"),
    "iters": Param("int", None, "training iterations (default: the schedule's)"),
    "batch_size": Param("int", None, "images per step over all GPUs (default: the schedule's)"),
    "lr": Param("float", None, "AdamW learning rate (default: the recipe's)"),
    "weight_decay": Param("float", None, "AdamW weight decay (default: the recipe's)"),
    "warmup_iters": Param("int", None, "linear warm-up iterations (default: the schedule's)"),
    "neck_channels": Param("int", 256, "channels of the feature pyramid"),
    "amp": Param("str", "auto", "mixed precision on CUDA: auto (the model's --precision, else bf16), fp16, "
                                "bf16 or off; never on CPU", choices=("auto", "fp16", "bf16", "off")),
    "grad_checkpointing": Param("bool", False, "activation checkpointing per block of a fine-tuned backbone"),
    "train_limit": Param("int", None, "train on the first N training images only (smoke runs)"),
    "resume": Param("bool", True, "resume from the last checkpoint of an identical interrupted run"),
}


def torch_release(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as ``2.5.1+cu121`` or ``2.6.0a0``."""
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if not m:
        raise SparcEvalError(f"torch version {version!r}: expected MAJOR.MINOR...")
    return int(m.group(1)), int(m.group(2))


def require_stack() -> None:
    """A clear error when the OpenMMLab stack of the ``transfer`` extra is missing or incomplete, or torch is
    older than 2.6 (mmengine reads checkpoints with a plain ``torch.load``, which only torch >= 2.6 restricts
    to weights, so an older torch would unpickle whatever a resumed work folder holds)."""
    import torch

    if torch_release(torch.__version__) < MIN_TORCH:
        raise SparcEvalError(f"transfer tasks need torch >= {'.'.join(map(str, MIN_TORCH))} (found {torch.__version__}):"
                             f" mmengine loads checkpoints with torch.load, which is restricted to weights by default "
                             f"only from that version; upgrade torch")
    missing = []
    for module, what in STACK.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(what)
    if missing:
        raise SparcEvalError(f"transfer tasks need {', '.join(missing)}: install the extra with "
                             f"`pip install 'sparc-eval[transfer]'` and mmcv with `tools/install_mmcv.sh "
                             f"PYTHON` (or `make install-all`); `python -c 'import mmcv.ops'` proves it")


def versions() -> dict:
    """Versions of the OpenMMLab packages that ran the recipe."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("mmengine", "mmcv", "mmdet", "mmsegmentation"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out
