"""Dense inference helpers of zero-shot segmentation: mmseg-style rescaling and sliding windows,
window batches through the engine, and class-chunked per-pixel argmax (memory-bounded)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from ..models.base import PatchEmbeddings
from ..models.transforms import INTERPOLATIONS

CHUNK_ELEMENTS = 1 << 23  # floats per class chunk of a full-resolution score map (32 MiB)


def rescale_size(width: int, height: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """(w, h) after an aspect-preserving resize to shorter side ``short_side`` with the longer side
    capped at ``max_long_side`` (mmcv ``rescale_size`` with scale (max_long_side, short_side))."""
    factor = min(max_long_side / max(width, height), short_side / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def sliding_windows(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Windows (y1, y2, x1, x2) of mmsegmentation's ``slide_inference``: starts every ``stride``
    pixels, the last shifted back to end at the border; one window per axis when the image is smaller
    than ``crop``."""
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    out = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


class SlideWindows:
    """PIL image -> every sliding window of the resized image, normalised, [n_win, 3, crop, crop]
    (``sliding_windows`` order; a window is zero-padded at the bottom/right where the resized image
    is smaller than ``crop``). The image is resized once. Picklable for DataLoader workers."""

    def __init__(self, short_side: int, max_long_side: int, crop: int, stride: int, interpolation: str,
                 mean: Sequence[float], std: Sequence[float]):
        self.short_side, self.max_long_side, self.crop, self.stride = short_side, max_long_side, crop, stride
        self.interpolation, self.mean, self.std = INTERPOLATIONS[interpolation], list(mean), list(std)

    def resized_hw(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of an image of ``size`` (w, h) after the aspect-preserving resize."""
        w, h = rescale_size(*size, self.short_side, self.max_long_side)
        return h, w

    def windows(self, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """The windows (y1, y2, x1, x2) of an image of ``size`` (w, h)."""
        return sliding_windows(*self.resized_hw(size), self.crop, self.stride)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img if img.mode == "RGB" else img.convert("RGB")
        hw = self.resized_hw(img.size)
        x = TF.normalize(TF.to_tensor(TF.resize(img, list(hw), interpolation=self.interpolation)), self.mean, self.std)
        c = self.crop
        return torch.stack([F.pad(x[:, y1:y2, x1:x2], (0, c - (x2 - x1), 0, c - (y2 - y1)))
                            for y1, y2, x1, x2 in sliding_windows(*hw, c, self.stride)])


class WindowBatches:
    """The model as the engine sees it in slide mode: a batch of images' windows [B, n_win, 3, c, c]
    is encoded ``max_windows`` windows per forward pass, and each image's windows come back stacked
    along the patch axis (embeddings [B, n_win * P, D], grid (n_win * rows, cols))."""

    def __init__(self, model, max_windows: int):
        self._model, self._max = model, max_windows

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode_image_patches(self, batch: torch.Tensor) -> PatchEmbeddings:
        b, n = batch.shape[:2]
        flat = batch.flatten(0, 1)
        outs = [self._model.encode_image_patches(flat[s:s + self._max]) for s in range(0, len(flat), self._max)]
        rows, cols = outs[0].grid
        emb = torch.cat([o.embeddings for o in outs])
        return PatchEmbeddings(emb.reshape(b, n * rows * cols, emb.shape[-1]), (n * rows, cols))


def chunked_argmax(num_classes: int, out_hw: tuple[int, int], scores: Callable[[slice], torch.Tensor],
                   allowed: torch.Tensor | None = None, extra_elements: int = 0) -> torch.Tensor:
    """Argmax over classes of ``scores(slice) -> [c, H, W]``, built a chunk of classes at a time
    (running max, ties to the lowest class id); classes with ``allowed[c] == False`` never win."""
    per_class = out_hw[0] * out_hw[1] + extra_elements
    chunk = max(1, CHUNK_ELEMENTS // max(per_class, 1))
    best = arg = None
    for start in range(0, num_classes, chunk):
        sl = slice(start, min(start + chunk, num_classes))
        x = scores(sl)
        if allowed is not None:
            x = x.masked_fill(~allowed[sl].to(x.device)[:, None, None], float("-inf"))
        m, a = x.max(dim=0)
        del x  # the next chunk is built while this one would otherwise still be referenced
        if best is None:
            best, arg = m, a + start
        else:
            better = m > best
            best, arg = torch.where(better, m, best), torch.where(better, a + start, arg)
    return arg


def resize_scores(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, ``align_corners=False``; ``x`` [c, h, w]."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False)[0]


def whole_scores(grid: torch.Tensor, input_hw: tuple[int, int], out_hw: tuple[int, int], sl: slice) -> torch.Tensor:
    """Scores of the classes ``sl`` resized to the model input, then to the label size [c, H, W]."""
    return resize_scores(resize_scores(grid[sl], input_hw), out_hw)


