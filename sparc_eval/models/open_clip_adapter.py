"""``open_clip:ARCH`` models: random init, a pretrained tag from the local cache, or a weights file.

``--pretrained`` may be a local ``.pt/.pth/.bin/.safetensors`` file (open_clip training checkpoints
included: ``state_dict`` key, ``module.`` prefix) or an open_clip pretrained tag, which is looked up
in the local Hugging Face cache only; nothing is downloaded. Weights are loaded strictly through
``checkpoint_io`` (never plain unpickling).

Pre-projection features for ViTs: the pooled token after ``ln_post``, before ``proj``. Dense outputs
for ViTs without attention pooling (``supports`` says False for ConvNets and attention-pooled ViTs,
so a suite records such tasks as unsupported): patch embeddings are the final tokens after ``ln_post`` projected with the
visual projection (``dense=direct``), or MaskCLIP's value path (``dense=maskclip``, see
``encode_image_patches``); token embeddings are the text tower's final tokens after ``ln_final``
projected with the text projection, masked to the non-padding positions (the tower's ``pad_id``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint_io import WEIGHT_SUFFIXES, load_into, load_state_dict
from ..errors import ModelLoadError, UnknownNameError
from ..fileio import sha256_file, sha256_json
from ..open_clip_configs import open_clip_module
from .base import ModelAdapter, ModelIdentity, PatchEmbeddings, UnsupportedCapability, spec_fingerprint
from .transforms import apply_overrides, build_image_transform


def find_cached_tag(arch: str, tag: str) -> Path:
    """The local file of an open_clip pretrained tag (Hugging Face cache only) or a clear error."""
    open_clip = open_clip_module()
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise UnknownNameError(f"open_clip pretrained tag for {arch}", tag,
                               open_clip.list_pretrained_tags_by_model(arch) or ["(none)"])
    from huggingface_hub import constants, try_to_load_from_cache

    hub = (cfg.get("hf_hub") or "").strip("/")
    looked = []
    if hub:
        parts = hub.split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            looked.append(f"{repo}/{name}")
            if isinstance(hit, str):
                return Path(hit)
    raise ModelLoadError(
        f"open_clip:{arch} --pretrained {tag}: the weights are not in the local cache "
        f"(looked for {', '.join(looked) or 'a Hugging Face repo, but the tag has none'} in "
        f"{constants.HF_HUB_CACHE}). sparc-eval never downloads weights: fetch them once "
        f"(e.g. `huggingface-cli download {hub or '<repo>'}`) or pass a local weights file to --pretrained.")


def tokenizer_truncated(tokenizer, texts: Sequence[str]) -> list[bool]:
    """Whether each text is cut by an open_clip tokenizer (its tokens plus start/end exceed the context)."""
    ctx = getattr(tokenizer, "context_length", None)
    enc = getattr(tokenizer, "encode", None)
    if ctx is None or enc is None:
        return [False] * len(texts)
    return [len(enc(t)) + 2 > ctx for t in texts]


class OpenClipAdapter(ModelAdapter):
    def __init__(self, model, tokenizer, dense: str = "direct", **kw):
        super().__init__(**kw)
        self.model = model
        self.tokenizer = tokenizer
        self.dense = dense

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def _encode_images(self, images):
        return self.model.encode_image(images)

    def _encode_texts(self, texts):
        return self.model.encode_text(self._tokens(texts))

    def truncated(self, texts):
        return tokenizer_truncated(self.tokenizer, texts)

    def _plain_vit(self) -> bool:
        visual = self.model.visual
        return (hasattr(visual, "conv1") and hasattr(visual, "transformer")
                and getattr(visual, "attn_pool", None) is None)

    def _text_tower(self):
        """The open_clip text transformer whose tokens we read (None for Hugging Face text towers)."""
        tower = getattr(self.model, "text", self.model)
        transformer = getattr(tower, "transformer", None)
        return tower if hasattr(transformer, "get_cast_dtype") and hasattr(tower, "token_embedding") else None

    def supports(self, capability: str) -> bool:
        if not super().supports(capability):
            return False
        if capability in ("image_patches", "image_features"):
            return self._plain_vit()
        return self._text_tower() is not None

    def _vit(self):
        visual = self.model.visual
        if not self._plain_vit():
            raise UnsupportedCapability(f"model {self.identity.name!r}: patch tokens and pre-projection features "
                                        f"need a plain open_clip VisionTransformer (no attention pooling), "
                                        f"found {type(visual).__name__}")
        return visual

    def _encode_image_features(self, images):
        visual = self._vit()
        pooled, _ = visual._pool(visual.transformer(visual._embeds(images)))
        return pooled

    def _encode_image_patches(self, images):
        visual = self._vit()
        x = visual._embeds(images)
        blocks = list(visual.transformer.resblocks)
        if self.dense == "maskclip":
            for blk in blocks[:-1]:
                x = blk(x)
            x = maskclip_last_block(blocks[-1], x)
        else:
            for blk in blocks:
                x = blk(x)
        tokens = visual.ln_post(x[:, 1:])
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        gh, gw = visual.grid_size
        return PatchEmbeddings(tokens, (gh, gw))

    def _encode_text_tokens(self, texts):
        tower = self._text_tower()
        if tower is None:
            raise UnsupportedCapability(f"model {self.identity.name!r}: per-token text embeddings need an open_clip "
                                        f"text transformer, found {type(getattr(self.model, 'text', None)).__name__}")
        ids = self._tokens(texts)
        cast = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(ids).to(cast) + tower.positional_embedding.to(cast)
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        x = tower.ln_final(x)
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        return x, ids != getattr(tower, "pad_id", 0)


def maskclip_last_block(block, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's last block: attention bypassed, each token takes its own value vector.

    v = W_v LN1(x) + b_v, then the attention output projection, the residual, and the block's MLP
    (with LN2), as in MaskCLIP (Zhou et al. 2022). Works on open_clip ``ResidualAttentionBlock``.
    """
    attn = block.attn
    d = x.shape[-1]
    h = block.ln_1(x)
    w_v = attn.in_proj_weight[2 * d:]
    b_v = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
    v = torch.nn.functional.linear(h, w_v, b_v)
    out = attn.out_proj(v)
    ls_1 = getattr(block, "ls_1", torch.nn.Identity())
    x = x + ls_1(out)
    ls_2 = getattr(block, "ls_2", torch.nn.Identity())
    return x + ls_2(block.mlp(block.ln_2(x)))


def load(spec: str, pretrained: str | None = None, *, device: torch.device, precision: str,
         name: str, seed: int = 0, preprocessing: dict | None = None, dense: str = "direct") -> OpenClipAdapter:
    """Build ``open_clip:ARCH`` (``spec`` without the prefix is the architecture)."""
    open_clip = open_clip_module()
    arch = spec.split(":", 1)[1]
    if arch not in open_clip.list_models():
        raise UnknownNameError("open_clip architecture", arch, open_clip.list_models())
    weights_file: Path | None = None
    tag_cfg: dict = {}
    if pretrained:
        p = Path(pretrained).expanduser()
        if p.suffix in WEIGHT_SUFFIXES or p.exists():
            weights_file = p
        else:
            tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
            weights_file = find_cached_tag(arch, pretrained)
    force_pre = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}

    def create(image_size: int | None = None):
        logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded: we load them
        try:
            return open_clip.create_model(arch, pretrained=None, force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
                                          force_preprocess_cfg=force_pre or None, force_image_size=image_size)
        except RuntimeError as e:
            raise ModelLoadError(f"open_clip:{arch}: cannot build the model ({e})") from None
        finally:
            logging.disable(logging.NOTSET)

    state = load_state_dict(weights_file) if weights_file is not None else None  # refused before anything is built
    torch.manual_seed(seed)
    model = create()
    if weights_file is not None:
        load_into(model, state, weights_file, f"open_clip:{arch}")
        del state
        weights_sha = sha256_file(weights_file)
    else:
        weights_sha = sha256_json({"random_init": spec, "seed": seed})
    native = model.visual.preprocess_cfg["size"]
    native = int(native[0] if isinstance(native, (tuple, list)) else native)
    resolution = (preprocessing or {}).get("resolution")
    resized = None
    if resolution and int(resolution) != native:
        # Same weights at another input size: a ViT's position embeddings are interpolated (bicubic).
        state = model.state_dict()
        model = create(int(resolution))
        open_clip.model.resize_pos_embed(state, model)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise ModelLoadError(f"open_clip:{arch}: --resolution {int(resolution)} needs a ViT (its position "
                                 f"embeddings are interpolated); {type(model.visual).__name__} runs at its native "
                                 f"{native} px only") from None
        resized = f"position embeddings interpolated (bicubic) from {native} px to {int(resolution)} px"
    model.eval().to(device)
    cfg = model.visual.preprocess_cfg
    tokenizer = open_clip.get_tokenizer(arch)
    base_pre = {
        "resolution": native, "interpolation": cfg.get("interpolation", "bicubic"),
        "crop": {"shortest": "center", "squash": "squash", "longest": "pad"}.get(cfg.get("resize_mode", "shortest"),
                                                                                  "center"),
        "mean": list(cfg["mean"]), "std": list(cfg["std"]),
        "context_length": int(getattr(tokenizer, "context_length", 77)), "tokenizer": type(tokenizer).__name__,
        "dense": dense,
    }
    pre, _ = apply_overrides(base_pre, preprocessing)
    if resized:
        pre["resized"] = resized
    identity = ModelIdentity(spec=spec, pretrained=pretrained, name=name, weights_sha256=weights_sha)
    return OpenClipAdapter(model, tokenizer, dense=dense, identity=identity, image_transform=build_image_transform(pre),
                           preprocessing=pre, device=device, precision=precision)


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity before loading: the spec, the tag or file and the file's sha256."""
    return spec_fingerprint(spec, pretrained)
