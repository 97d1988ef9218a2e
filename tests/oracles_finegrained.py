"""Oracle models of the shapes world for the fine-grained tests, built on ``sparc_eval.models.oracle``.

- ``seg_oracle`` / ``probe_oracle``: the ground-truth oracle (dense outputs are the one-hot labels of
  the pixels; captions embed as the scenes they are true of), so it scores the best value.
- ``seg_oracle_permuted``: class prompts embed as a derangement of the six kinds (background fixed), so
  every foreground pixel is predicted wrong.
- ``probe_oracle_permuted``: each caption's scenes go through ``probe_permutation(n, seed)``, so the
  scores are known analytically.
"""
from __future__ import annotations

import numpy as np

from sparc_eval.models.oracle import build_oracle, caption_truth, shapes_oracle, shapes_oracle_permuted

KIND_DERANGEMENT = {0: 0, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 1}

__all__ = ["caption_truth", "probe_oracle", "probe_oracle_permuted", "probe_permutation", "seg_oracle",
           "seg_oracle_permuted"]

seg_oracle = shapes_oracle
probe_oracle = shapes_oracle
probe_oracle_permuted = shapes_oracle_permuted


def probe_permutation(n: int, seed: int) -> np.ndarray:
    """The scene permutation ``probe_oracle_permuted`` applies (as ``build_oracle``)."""
    return np.random.default_rng(seed).permutation(n)


def seg_oracle_permuted(pretrained=None):
    return build_oracle(pretrained, text_labels=KIND_DERANGEMENT)
