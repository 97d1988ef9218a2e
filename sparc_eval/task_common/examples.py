"""Examples for a person to look at: for a few image queries, what the model ranked first.

Retrieval and zero-shot classification keep, for ``examples`` image queries spread evenly over the
dataset, the ids of the top ``TOP_K`` candidates in the query's per-sample record (``top``, and
``top_hit``: 1 where the candidate is a right answer). The result's ``details["examples"]`` holds what
a page needs to show them without the dataset: each query image as a small JPEG thumbnail and the text
of every candidate shown. Aggregations never read these fields, so the metrics and intervals are the
same with or without them.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.base import ImageSet
from ..data.tar_index import TarMember
from ..metrics.rows import as_rows
from ..params import Param

TOP_K = 5
THUMBNAIL_PX = 96
PARAM = Param("int", 8, "image queries whose top-5 candidates are kept in the samples and shown on the leaderboard "
                        "page (0: none)", min=0, max=1000, affects_numbers=False)


def example_indices(n: int, count: int) -> list[int]:
    """``count`` query indices spread evenly over ``n`` (deterministic; fewer when ``n`` is smaller)."""
    if n == 0 or count == 0:
        return []
    return sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))


def top_candidates(queries, candidates, k: int = TOP_K, block: int = 65536) -> np.ndarray:
    """Indices [Q, k] of the ``k`` candidates with the highest inner product with each query, best first;
    ``candidates`` is a tensor or a row source (read block by block)."""
    q = queries.float()
    source = as_rows(candidates)
    k = min(k, source.n)
    best_s = torch.full((q.shape[0], 0), -torch.inf)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
    for start in range(0, source.n, block):
        rows = source.read(start, min(start + block, source.n))
        s = q @ rows.T
        best_s = torch.cat([best_s, s], dim=1)
        best_i = torch.cat([best_i, torch.arange(start, start + rows.shape[0]).expand(q.shape[0], -1)], dim=1)
        best_s, order = best_s.topk(min(k, best_s.shape[1]), dim=1)
        best_i = best_i.gather(1, order)
    return best_i.numpy()


def rows_of(source, indices: Sequence[int]) -> torch.Tensor:
    """Rows ``indices`` of a tensor or row source, in order."""
    src = as_rows(source)
    return torch.cat([src.read(i, i + 1) for i in indices]) if indices else torch.zeros(0)


def thumbnail(images: ImageSet, i: int, px: int = THUMBNAIL_PX) -> str:
    """Image ``i`` (cropped to its box, if any) as a JPEG data URI at most ``px`` pixels on its longer side."""
    path = images.paths[i]
    with Image.open(path.open() if isinstance(path, TarMember) else path) as img:
        img = img.convert("RGB")
        if images.boxes is not None and images.boxes[i] is not None:
            x, y, w, h = images.boxes[i]
            img = img.crop((x, y, x + w, y + h))
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def examples_details(images: ImageSet, indices: Sequence[int], kind: str, texts: dict[str, str]) -> dict:
    """``details["examples"]``: the query record ids' images as thumbnails and the candidates' texts."""
    return {"k": TOP_K, "kind": kind, "thumbnails": {images.ids[i]: thumbnail(images, i) for i in indices},
            "texts": texts}
