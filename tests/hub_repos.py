"""Repo contents for the Hub stand-in: a tiny open_clip repo, a tiny transformers CLIP repo, and
CLIP_benchmark webdataset shards, as the real Hub repos lay them out.

- :func:`open_clip_repo`: ``open_clip_config.json`` (``{"model_cfg", "preprocess_cfg"}``, as open_clip's
  ``push_to_hf_hub`` writes it) and ``open_clip_model.safetensors`` of a randomly initialised open_clip
  architecture (sparc-eval's ViT-Tiny-8-64 by default); serve it under any repo name, including a real
  pretrained tag's (``laion/CLIP-ViT-B-32-laion2B-s34B-b79K``) when the test only fetches;
- :func:`folder_repo`: every file under a folder (a ``save_pretrained`` folder, a wds export) by repo path.
"""
from __future__ import annotations

import json
from pathlib import Path


def open_clip_repo(arch: str = "ViT-Tiny-8-64", seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """(files, state dict) of a random ``arch`` as an open_clip Hub repo."""
    import torch
    from safetensors.torch import save

    from sparc_eval.open_clip_configs import open_clip_module

    open_clip = open_clip_module()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    config = {"model_cfg": open_clip.get_model_config(arch),
              "preprocess_cfg": {"mean": list(model.visual.image_mean), "std": list(model.visual.image_std)}}
    return {"open_clip_config.json": json.dumps(config, indent=2).encode(), "open_clip_model.safetensors": save(state)}, state


def folder_repo(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` keyed by its posix path relative to it."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
