"""The model adapter contract every loader returns.

An adapter turns any image-text model into the same small interface:

- ``image_transform(PIL.Image) -> Tensor[3, H, W]`` (or any tensor the model's ``encode_images`` takes),
- ``encode_images(batch) -> Tensor[B, D]`` and ``encode_texts(list[str]) -> Tensor[B, D]``, both
  l2-normalised, in float32, in the joint space,
- optionally ``encode_image_features(batch) -> Tensor[B, F]``: the pooled image features *before* the
  projection to the joint space (the CLIP paper's linear-probe features), and the dense outputs used
  by fine-grained tasks:
  ``encode_image_patches(batch) -> PatchEmbeddings`` ([B, P, D] in the joint space plus the grid) and
  ``encode_text_tokens(list[str]) -> (Tensor[B, L, D], Tensor[B, L] bool mask)``,
- ``identity`` (spec, pretrained, name, weights_sha256, source) and ``preprocessing`` (everything that changes
  numbers: resolution, interpolation, crop, mean/std, text context length), recorded in results.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ModelLoadError, SparcEvalError
from ..fileio import sha256_file, sha256_json

PRECISIONS = ("fp32", "fp16", "bf16")
CAPABILITIES = ("image_features", "image_patches", "text_tokens")


class UnsupportedCapability(SparcEvalError):
    """The model has no such output (e.g. dense patch embeddings for a ConvNet)."""


@dataclass
class PatchEmbeddings:
    """Dense image output: ``embeddings`` [B, P, D] in the joint space (not normalised), row-major
    over ``grid`` = (rows, cols) with rows * cols = P."""

    embeddings: torch.Tensor
    grid: tuple[int, int]


@dataclass
class ModelIdentity:
    """Who the model is. ``source`` is where fetched weights came from (a Hub record: repo, revision,
    commit, file, sha256), None for local files and built models."""

    spec: str
    pretrained: str | None
    name: str
    weights_sha256: str
    source: dict | None = None

    def as_dict(self) -> dict:
        out = {"spec": self.spec, "pretrained": self.pretrained, "name": self.name,
               "weights_sha256": self.weights_sha256}
        if self.source is not None:
            out["source"] = self.source
        return out


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite (True when empty), in one reduction pass: ``aminmax``
    propagates NaN, and an infinity is the minimum or the maximum. About 14x faster than ``isfinite(t).all()``
    on a dense patch batch (no bool tensor of ``t``'s size)."""
    if t.numel() == 0:
        return True
    low, high = torch.aminmax(t)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


@dataclass
class ModelAdapter:
    """Base class of adapters. Subclasses implement ``_encode_images`` / ``_encode_texts`` (raw
    features) and may implement the dense ``_encode_image_patches`` / ``_encode_text_tokens``;
    the public methods add autocast, float32 output and l2-normalisation."""

    identity: ModelIdentity
    image_transform: Callable
    preprocessing: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"

    # -- to implement --------------------------------------------------------------------------
    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def _encode_image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise UnsupportedCapability(f"model {self.identity.name!r} exposes no pre-projection image features")

    def _encode_image_patches(self, images: torch.Tensor) -> PatchEmbeddings:
        raise UnsupportedCapability(f"model {self.identity.name!r} has no dense patch embeddings")

    def _encode_text_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise UnsupportedCapability(f"model {self.identity.name!r} has no per-token text embeddings")

    def text_token_counts(self, texts: Sequence[str]) -> list[int] | None:
        """Tokens of each text before truncation, special tokens included (None: not known). The engine
        orders texts by it, so that batches cut to their longest text stay short."""
        return None

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text is longer than the text encoder's context (and so cut): its token count
        above ``preprocessing["context_length"]`` (all False when either is unknown)."""
        counts = self.text_token_counts(texts)
        context = self.preprocessing.get("context_length")
        if counts is None or not context:
            return [False] * len(texts)
        return [c > int(context) for c in counts]

    # -- public ----------------------------------------------------------------------------------
    def supports(self, capability: str) -> bool:
        """Whether the model provides an optional output (one of ``CAPABILITIES``). The base class
        checks that the adapter implements it; adapters whose support depends on the loaded model
        (a ConvNet has no patch tokens) refine this."""
        names = {"image_features": "_encode_image_features", "image_patches": "_encode_image_patches",
                 "text_tokens": "_encode_text_tokens"}
        if capability not in names:
            raise ValueError(f"unknown capability {capability!r}; expected one of {CAPABILITIES}")
        method = names[capability]
        return getattr(type(self), method) is not getattr(ModelAdapter, method)

    def autocast(self):
        """Autocast context for the configured precision; fp32 on CUDA is strict fp32 (``strict_fp32``)."""
        if self.precision == "fp32":
            return strict_fp32() if self.device.type == "cuda" else contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _checked(self, out, n: int, what: str, dims: int = 2) -> torch.Tensor:
        """``out`` as float32 if it is a tensor of ``dims`` dimensions with one row per input and only finite
        values, else ``ModelLoadError`` naming the model: a wrong row count would misalign every id, and
        NaN scores rank as perfect recall (a diverged checkpoint, or fp16 overflow)."""
        if not isinstance(out, torch.Tensor) or out.dim() != dims or out.shape[0] != n:
            found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelLoadError(f"model {self.identity.spec}: {what} of a batch of {n} came back as {found}; "
                                 f"expected a tensor of {dims} dimensions with {n} rows (one per input)")
        out = out.float()
        if not all_finite(out):
            rows = int((~torch.isfinite(out)).reshape(n, -1).any(1).sum())
            raise ModelLoadError(f"model {self.identity.spec}: {what} hold NaN or inf ({rows} of {n} rows of a batch); "
                                 f"expected finite numbers (diverged or damaged weights; with --precision fp16, an "
                                 f"overflow: try fp32 or bf16)")
        return out

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            out = self._encode_images(images.to(self.device, non_blocking=True))
        return F.normalize(self._checked(out, len(images), "image embeddings"), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        with self.autocast():
            out = self._encode_texts(texts)
        return F.normalize(self._checked(out, len(texts), "text embeddings"), dim=-1)

    @torch.no_grad()
    def encode_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled image features before the joint-space projection [B, F] (float32, not normalised)."""
        with self.autocast():
            out = self._encode_image_features(images.to(self.device, non_blocking=True))
        return out.float()

    @torch.no_grad()
    def encode_image_patches(self, images: torch.Tensor) -> PatchEmbeddings:
        with self.autocast():
            out = self._encode_image_patches(images.to(self.device, non_blocking=True))
        return PatchEmbeddings(self._checked(out.embeddings, len(images), "patch embeddings", 3), out.grid)

    @torch.no_grad()
    def encode_text_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = list(texts)
        with self.autocast():
            tokens, mask = self._encode_text_tokens(texts)
        mask = mask.bool()
        if (isinstance(tokens, torch.Tensor) and tokens.dim() == 3 and tokens.shape[0] == len(texts)
                and tuple(mask.shape) == tuple(tokens.shape[:2])):
            self._checked(tokens[mask], int(mask.sum()), "token embeddings (of real tokens)")  # padding may hold anything
            return tokens.float(), mask
        return self._checked(tokens, len(texts), "token embeddings", 3), mask


@contextlib.contextmanager
def strict_fp32():
    """fp32 means fp32 on CUDA: TF32 off for matmuls and cuDNN convolutions while inside (torch leaves
    cuDNN's on by default, which moves a ViT's patch embedding by ~1e-3 and can flip a linear probe's
    regularisation choice against the CPU), the previous switches restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def spec_fingerprint(spec: str, pretrained: str | None, *extra) -> str:
    """Identity of a model before it is loaded (keys the skip of identical runs): the spec and
    ``pretrained`` strings, the sha256 of ``pretrained`` when it is a file, then a loader's ``extra``
    parts (folder weights, source file). The default hook of loaders that define none."""
    parts: list = [spec, pretrained]
    if pretrained and Path(pretrained).expanduser().is_file():
        parts.append(sha256_file(Path(pretrained).expanduser()))
    return sha256_json(parts + list(extra))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> cuda when available, else cpu; anything else as given, checked to exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise SparcEvalError(f"--device {device!r}: not a device; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SparcEvalError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise SparcEvalError(f"--device {device}: this machine has {count} GPU(s), "
                                 f"cuda:0 to cuda:{count - 1}")
    return dev


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise SparcEvalError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision
