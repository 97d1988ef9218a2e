"""``sparc:DIR`` models: checkpoints written by sparc-eval's pretraining module (``sparc-eval pretrain``).

``DIR`` is a checkpoint folder (``config.json`` + ``model.safetensors``) or a run folder holding
``checkpoint-STEP`` folders; there ``--pretrained STEP`` (``1000`` or ``checkpoint-1000``) picks one, the
latest by default. Weights are read with safetensors only. The identity's ``weights_sha256`` is the sha256
of ``model.safetensors``; preprocessing is the one the model was trained with (``config.json``), with the
usual CLI overrides.

Outputs (see ``pretrain/model.py``):

- ``encode_images`` / ``encode_texts``: the global embeddings the global loss was trained on,
  ``g_v(h_v(mean_p f_v))`` and ``g_t(masked mean_l f_t)``;
- ``encode_image_patches``: the paper's segmentation path (App. D.7), each patch feature through the
  extra dense layer ``h_v`` and the adaptor ``g_v``, so patches live in the space of the global text
  embeddings they are compared with (``--dense direct``; MaskCLIP's path does not apply);
- ``encode_text_tokens``: ``g_t(f_t)`` per token, the space of the local loss, with the padding mask.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..errors import ModelLoadError, SparcEvalError, UnknownNameError
from ..fileio import sha256_file
from .base import ModelAdapter, ModelIdentity, PatchEmbeddings, spec_fingerprint
from .open_clip_adapter import tokenizer_counts
from .text_batching import cut_length, open_clip_text_tower, pad_tokens, tower_decisions, tower_tokens
from .transforms import apply_overrides, build_image_transform, check_preprocessing


class SparcAdapter(ModelAdapter):
    """Wraps a ``pretrain.model.DualEncoder`` and its tokenizer (a loaded checkpoint or the model in training).

    The text tower is causal, or bidirectional with its padding masked out, and the global text embedding
    is a mean over real tokens: texts run at their batch's longest length (exact), unless
    ``preprocessing["trim_text"]`` is false."""

    def __init__(self, model, tokenizer, **kw):
        super().__init__(**kw)
        self.model, self.tokenizer = model, tokenizer
        self.preprocessing = dict(self.preprocessing)  # decisions are recorded in our own copy
        self.text_tower = open_clip_text_tower(model.text)
        self.trim, self.trim_tokens = tower_decisions(self.preprocessing, self.text_tower, "mean")

    def _ids(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def _features(self, ids: torch.Tensor, trim: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """f_t and the token mask of ``ids``, on the batch cut to its longest text when ``trim``."""
        if not trim:
            return self.model.text_features(ids)
        ids = ids[:, :cut_length(self.text_tower, ids, "mean")]
        return tower_tokens(self.text_tower, ids), ids != self.text_tower.pad_id

    def _encode_images(self, images):
        return self.model.encode_image(images)

    def _encode_texts(self, texts):
        return self.model._global_text(*self._features(self._ids(texts), self.trim.trim))

    def _encode_image_features(self, images):
        return self.model.image_features(images).mean(dim=1)

    def _encode_image_patches(self, images):
        return PatchEmbeddings(self.model.encode_image_patches(images), self.model.grid_size)

    def _encode_text_tokens(self, texts):
        ids = self._ids(texts)
        feats, mask = self._features(ids, self.trim_tokens.trim)
        return pad_tokens(self.model.g_t(feats), mask, ids.shape[1])

    def text_token_counts(self, texts):
        return tokenizer_counts(self.tokenizer, texts)


def wrap(model, tokenizer, preprocessing: dict, identity: ModelIdentity, device: torch.device,
         precision: str = "fp32") -> SparcAdapter:
    """An adapter around an in-memory ``DualEncoder`` (used by the trainer's periodic evaluation)."""
    return SparcAdapter(model, tokenizer, identity=identity, image_transform=build_image_transform(preprocessing),
                        preprocessing=preprocessing, device=device, precision=precision)


def load(spec: str, pretrained: str | None = None, *, device: torch.device, precision: str, name: str,
         seed: int = 0, preprocessing: dict | None = None, dense: str = "direct") -> SparcAdapter:
    """Build ``sparc:DIR`` (``pretrained`` optionally picks a step in a run folder)."""
    from ..pretrain.checkpoint import MODEL_FILE, load_model, read_config, resolve_checkpoint
    from ..pretrain.model import build_tokenizer

    if dense != "direct":
        raise ModelLoadError(f"--dense {dense}: sparc: models have one dense path (App. D.7: h_v then g_v); "
                             f"use --dense direct")
    target = Path(spec.split(":", 1)[1])
    with _naming_config(target):
        ckpt = resolve_checkpoint(target, pretrained)
    with _naming_config(ckpt):  # the config is checked before the model is built
        check_preprocessing(read_config(ckpt).get("preprocessing") or {}, f"{ckpt / 'config.json'}: preprocessing")
        model, cfg = load_model(ckpt)
    pre, _ = apply_overrides({**cfg["preprocessing"], "dense": "h_v+g_v" if model.h_v is not None else "g_v",
                              "step": cfg["step"]}, preprocessing)
    identity = ModelIdentity(spec=spec, pretrained=pretrained, name=name, weights_sha256=sha256_file(ckpt / MODEL_FILE))
    return wrap(model.to(device), build_tokenizer(model.config), pre, identity, device, precision)


@contextlib.contextmanager
def _naming_config(ckpt: Path) -> Iterator[None]:
    """Errors about a checkpoint's ``config.json`` name the file: an unknown architecture, or a file that is
    not UTF-8 or nested too deeply to parse (``pretrain.checkpoint.read_config`` lets those through)."""
    where = ckpt / "config.json"
    try:
        yield
    except (RecursionError, UnicodeDecodeError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else "not UTF-8 text"
        raise ModelLoadError(f"{where}: cannot read the checkpoint config (JSON {why})") from None
    except UnknownNameError as e:
        raise ModelLoadError(f"{where}: model: {e}") from None


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity before loading: the strings plus the weights of the checkpoint the run folder resolves
    to now (its latest, or the ``pretrained`` step)."""
    from ..checkpoint_io import folder_weights_sha256
    from ..pretrain.checkpoint import resolve_checkpoint

    target = Path(spec.split(":", 1)[1]).expanduser()
    extra = []
    if target.is_dir():
        try:
            with _naming_config(target):
                target = resolve_checkpoint(target, pretrained)
        except SparcEvalError:
            pass
    if target.is_dir():
        try:
            extra.append(folder_weights_sha256(target))
        except SparcEvalError:
            pass  # no weights: loading says so
    return spec_fingerprint(spec, pretrained, *extra)
