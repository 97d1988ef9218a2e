"""Image preprocessing built from a recorded description, so overrides from the CLI are exact.

A preprocessing dict has ``resolution`` (int, square output), ``interpolation`` (bicubic, bilinear,
nearest), ``crop`` (``center``: resize the shorter side then centre-crop, as CLIP; ``squash``:
resize both sides, ignoring aspect; ``pad``: letterbox onto a square of ``fill``), ``mean`` and
``std`` (RGB, 0-1 scale). The one text override, ``trim_text`` (bool), is passed through to the
adapters' text paths (``models.text_batching``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from PIL import Image
from torchvision import transforms as T

from ..errors import SparcEvalError

INTERPOLATIONS = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
                  "nearest": T.InterpolationMode.NEAREST}
CROPS = ("center", "squash", "pad")
OVERRIDABLE = ("resolution", "interpolation", "crop")
TEXT_OVERRIDABLE = ("trim_text",)  # read by the adapters' text paths (``models.text_batching``)


def _to_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


class _PadToSquare:
    def __init__(self, fill: tuple[int, int, int]):
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), self.fill)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        return canvas


def check_preprocessing(pre: Mapping, where: str = "preprocessing") -> None:
    """``SparcEvalError`` naming ``where`` and the field unless ``pre`` describes a usable transform."""
    res = pre.get("resolution")
    if isinstance(res, bool) or not isinstance(res, int) or res < 8:
        raise SparcEvalError(f"{where}.resolution: {res!r}; expected an image size of at least 8 pixels")
    if pre.get("interpolation") not in INTERPOLATIONS:
        raise SparcEvalError(f"{where}.interpolation: {pre.get('interpolation')!r}; expected one of "
                             f"{', '.join(INTERPOLATIONS)}")
    if pre.get("crop") not in CROPS:
        raise SparcEvalError(f"{where}.crop: {pre.get('crop')!r}; expected one of {', '.join(CROPS)}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, (list, tuple)) and len(v) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
            raise SparcEvalError(f"{where}.{key}: {v!r}; expected three finite numbers (RGB, 0-1 scale)")
    if any(x <= 0 for x in pre["std"]):
        raise SparcEvalError(f"{where}.std: {pre['std']!r}; expected positive numbers")


def build_image_transform(pre: Mapping, where: str = "preprocessing") -> T.Compose:
    """A torchvision transform PIL -> normalised float tensor [3, R, R] for preprocessing ``pre``
    (checked first: a bad field is a ``SparcEvalError`` naming ``where``)."""
    check_preprocessing(pre, where)
    res = int(pre["resolution"])
    interp = INTERPOLATIONS[pre["interpolation"]]
    crop = pre["crop"]
    steps = [_to_rgb]
    if crop == "center":
        steps += [T.Resize(res, interpolation=interp), T.CenterCrop(res)]
    elif crop == "squash":
        steps += [T.Resize((res, res), interpolation=interp)]
    else:
        steps += [_PadToSquare(tuple(int(255 * m) for m in pre["mean"])), T.Resize((res, res), interpolation=interp)]
    steps += [T.ToTensor(), T.Normalize(pre["mean"], pre["std"])]
    return T.Compose(steps)


def apply_overrides(pre: dict, overrides: Mapping | None) -> tuple[dict, bool]:
    """Validated copy of ``pre`` with CLI overrides applied -> (preprocessing, image preprocessing changed?)."""
    out = dict(pre)
    changed = False
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in TEXT_OVERRIDABLE:
            if not isinstance(value, bool):
                raise SparcEvalError(f"preprocessing override {key}={value!r}: expected true or false")
            out[key] = value
            continue
        if key not in OVERRIDABLE:
            raise SparcEvalError(f"preprocessing override {key!r}: expected one of "
                                 f"{', '.join(OVERRIDABLE + TEXT_OVERRIDABLE)}")
        if key == "resolution":
            value = int(value)
            if value < 8:
                raise SparcEvalError(f"--resolution {value}: expected an image size of at least 8 pixels")
        if key == "interpolation" and value not in INTERPOLATIONS:
            raise SparcEvalError(f"--interpolation {value!r}: expected one of {', '.join(INTERPOLATIONS)}")
        if key == "crop" and value not in CROPS:
            raise SparcEvalError(f"--crop {value!r}: expected one of {', '.join(CROPS)}")
        if out.get(key) != value:
            out[key] = value
            changed = True
    return out, changed
