"""open_clip with sparc-eval's small model configs registered (floor 0: used by the model loaders, the
pretraining model and the transfer towers). The configs are the JSON files of this folder:
``ViT-Tiny-8-64`` (the shapes world's architecture) and ``ViT-Small-16-224``."""
from __future__ import annotations

from pathlib import Path

_ADDED = False


def open_clip_module():
    """The ``open_clip`` module, with this folder's configs added on first use."""
    global _ADDED
    import open_clip

    if not _ADDED:
        open_clip.add_model_config(Path(__file__).parent)
        _ADDED = True
    return open_clip
