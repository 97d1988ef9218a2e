"""Model loaders by spec prefix (``open_clip:``, ``hf:``, ``py:``, ``sparc:``), extensible through the
``sparc_eval.models`` entry-point group (name = prefix, value = ``module:load`` function).

A loader module owns its prefix: ``load(spec, pretrained, ...)`` builds the adapter and the optional
``fingerprint(spec, pretrained)`` says, before loading, which weights the spec names (the default
hashes the strings and a ``pretrained`` file).
"""
from __future__ import annotations

import importlib

from ..errors import ModelLoadError
from ..names import slug
from ..registry import Registry
from .base import (
    ModelAdapter,
    ModelIdentity,
    PatchEmbeddings,
    UnsupportedCapability,
    check_precision,
    resolve_device,
    spec_fingerprint,
)

LOADERS: Registry = Registry("model type", "sparc_eval.models", {
    "open_clip": "sparc_eval.models.open_clip_adapter:load",
    "hf": "sparc_eval.models.hf_adapter:load",
    "py": "sparc_eval.models.python_adapter:load",
    "sparc": "sparc_eval.models.sparc_adapter:load",
})

__all__ = [
    "LOADERS",
    "ModelAdapter",
    "ModelIdentity",
    "PatchEmbeddings",
    "UnsupportedCapability",
    "default_model_name",
    "fingerprint",
    "load_model",
    "loaders",
]


def loaders() -> dict[str, str]:
    """Spec prefix -> ``module:function`` of its loader (built-ins plus installed plugins)."""
    return LOADERS.references()


def _prefix(spec: str) -> str:
    """The spec's loader prefix, checked: ``ModelLoadError`` / ``UnknownNameError`` otherwise."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ModelLoadError(f"--model {spec!r}: expected PREFIX:NAME with PREFIX one of {', '.join(LOADERS.names())} "
                             f"(e.g. open_clip:ViT-B-32, hf:/models/clip, py:mymodule:build)")
    LOADERS.get(prefix)
    return prefix


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity of the weights ``spec`` names, before loading: the loader's ``fingerprint`` hook."""
    load = LOADERS.get(_prefix(spec))
    hook = getattr(importlib.import_module(load.__module__), "fingerprint", None)
    return hook(spec, pretrained) if hook is not None else spec_fingerprint(spec, pretrained)


_CHECKPOINT_FOLDERS = ("checkpoints", "checkpoint", "ckpts", "ckpt", "weights")


def default_model_name(spec: str, pretrained: str | None) -> str:
    """Slug of spec and pretrained. A file contributes its stem and the folder that names the run,
    skipping a ``checkpoints`` folder (open_clip's ``logs/RUN/checkpoints/epoch_32.pt`` gives
    ``RUN-epoch_32``), so two runs' same-named files get different names."""
    if pretrained:
        from pathlib import Path

        p = Path(pretrained)
        if p.suffix:
            run = p.expanduser().absolute().parent
            while run.name.lower() in _CHECKPOINT_FOLDERS and run.parent != run:
                run = run.parent
            tag = f"{run.name}-{p.stem}" if run.name else p.stem
        else:
            tag = p.name or pretrained
        return slug(f"{spec}-{tag}")
    return slug(spec)


def load_model(spec: str, pretrained: str | None = None, *, device=None, precision: str = "fp32",
               model_name: str | None = None, seed: int = 0, preprocessing: dict | None = None,
               dense: str = "direct") -> ModelAdapter:
    """Build the adapter for ``spec`` (see DESIGN.md §3 for the spec forms)."""
    load = LOADERS.get(_prefix(spec))
    return load(spec, pretrained, device=resolve_device(device), precision=check_precision(precision),
                name=model_name or default_model_name(spec, pretrained), seed=seed, preprocessing=preprocessing,
                dense=dense)
