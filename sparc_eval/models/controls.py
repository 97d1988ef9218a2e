"""Control models: what a trained model is compared against to show that a task measures something.

``py:sparc_eval.models.controls:untrained --pretrained CHECKPOINT`` is the architecture of a ``sparc:``
checkpoint (its ``config.json``: towers, adaptors, ``h_v``, pooling, dense path, tokenizer and
preprocessing) with freshly initialised weights, seeded by ``--seed``: the same model as the trained
checkpoints, minus the training. ``CHECKPOINT`` is a checkpoint folder or its ``config.json``; its
weights are never read. On a zero-shot task it should sit at chance; a trained model that does not
separate from it has learned nothing the task measures. Its identity hashes this file, the seed and
the sha256 of ``config.json`` (``py:`` loader), so another architecture is another model.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelLoadError
from .base import ModelIdentity
from .sparc_adapter import SparcAdapter, wrap


def _config(pretrained: str | None) -> tuple[Path, dict]:
    if not pretrained:
        raise ModelLoadError("untrained control: --pretrained must name a sparc: checkpoint folder or its "
                             "config.json (e.g. checkpoints/shapes-sparc-seed0); its architecture is rebuilt "
                             "with random weights")
    path = Path(pretrained).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelLoadError(f"untrained control: {path}: cannot read ({e.strerror}); expected the config.json of "
                             f"a sparc: checkpoint") from None
    except ValueError as e:
        raise ModelLoadError(f"untrained control: {path}: not JSON ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("preprocessing"), dict):
        raise ModelLoadError(f"untrained control: {path}: expected a sparc: checkpoint config.json with 'model' and "
                             f"'preprocessing' sections")
    return path, cfg


def untrained(pretrained: str | None = None, seed: int = 0, device: torch.device | str = "cpu",
              precision: str = "fp32", preprocessing: dict | None = None) -> SparcAdapter:
    """The architecture of the checkpoint ``pretrained`` with random weights (``torch.manual_seed(seed)``)."""
    from ..pretrain.model import DualEncoder, ModelConfig, build_tokenizer
    from .transforms import apply_overrides, check_preprocessing

    path, cfg = _config(pretrained)
    model_cfg = ModelConfig.from_dict(cfg["model"], where=f"{path}: model")
    check_preprocessing(cfg["preprocessing"], f"{path}: preprocessing")
    torch.manual_seed(seed)
    model = DualEncoder(model_cfg).eval()
    pre, _ = apply_overrides({**cfg["preprocessing"], "dense": "h_v+g_v" if model.h_v is not None else "g_v",
                              "weights": f"random (seed {seed})"}, preprocessing)
    device = torch.device(device)
    identity = ModelIdentity(spec="py:sparc_eval.models.controls:untrained", pretrained=str(pretrained),
                             name="untrained", weights_sha256="")  # replaced by the py: loader's identity
    return wrap(model.to(device), build_tokenizer(model_cfg), pre, identity, device, precision)
