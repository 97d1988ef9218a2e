"""``open_clip:ARCH`` and ``open_clip:hf-hub:ORG/NAME[@REV]`` models: random init, a pretrained tag, a
Hub repo, or a weights file.

``--pretrained`` may be a local ``.pt/.pth/.bin/.safetensors`` file (open_clip training checkpoints
included: ``state_dict`` key, ``module.`` prefix) or an open_clip pretrained tag (``open_clip:ViT-B-32
--pretrained laion2b_s34b_b79k``), whose weights are fetched on first use from the tag's Hugging Face repo
into the standard cache, as open_clip does (``hub.fetch_open_clip_tag``); ``open_clip:hf-hub:ORG/NAME``
fetches the repo's ``open_clip_config.json`` and weights (``hub.fetch_open_clip_hub``), at ``@REV`` if
given. Fetched files are checked against the Hub's sha256 and recorded in ``identity.source``;
``--offline`` / ``HF_HUB_OFFLINE=1`` read the cache only. Weights are loaded strictly through
``checkpoint_io`` (safetensors, or ``torch.load(weights_only=True)``; never plain unpickling).

Pre-projection features for ViTs: the pooled token after ``ln_post``, before ``proj``. Dense outputs
for ViTs without attention pooling (``supports`` says False for ConvNets and attention-pooled ViTs,
so a suite records such tasks as unsupported): patch embeddings are the final tokens after ``ln_post`` projected with the
visual projection (``dense=direct``), or MaskCLIP's value path (``dense=maskclip``, see
``encode_image_patches``); token embeddings are the text tower's final tokens after ``ln_final``
projected with the text projection, masked to the non-padding positions (the tower's ``pad_id``) and
zero at padding (CoCa-style towers, whose tokens depend on the [CLS] appended after them, have none).

Texts run at their batch's longest length where that is exact (causal towers pooled at the end token,
see ``text_batching``); other towers keep their trained padding. ``preprocessing["trim_text"]: false``
turns it off; the decision and its reason are recorded in the preprocessing.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import hub
from ..checkpoint_io import WEIGHT_SUFFIXES, load_into, load_state_dict
from ..errors import ConfigError, ModelLoadError, UnknownNameError
from ..fileio import sha256_file, sha256_json
from ..open_clip_configs import open_clip_module
from .base import ModelAdapter, ModelIdentity, PatchEmbeddings, UnsupportedCapability, spec_fingerprint
from .text_batching import (
    TextTower,
    cut_length,
    encode_cut,
    open_clip_text_tower,
    pad_tokens,
    project,
    tower_decisions,
    tower_tokens,
)
from .transforms import apply_overrides, build_image_transform


def tokenizer_counts(tokenizer, texts: Sequence[str]) -> list[int] | None:
    """Tokens of each text under an open_clip BPE tokenizer, start and end tokens included, before
    truncation (None for tokenizers without ``encode``, e.g. Hugging Face ones)."""
    enc = getattr(tokenizer, "encode", None)
    if enc is None:
        return None
    return [len(enc(t)) + 2 for t in texts]


class OpenClipAdapter(ModelAdapter):
    """Texts run at the batch's longest length where that is exact (``text_batching``); the decision,
    from the text tower's structure, is recorded as ``preprocessing["trim_text"]`` with its reason."""

    def __init__(self, model, tokenizer, dense: str = "direct", **kw):
        super().__init__(**kw)
        self.model = model
        self.tokenizer = tokenizer
        self.dense = dense
        self.preprocessing = dict(self.preprocessing)  # decisions are recorded in our own copy
        self.text_tower = open_clip_text_tower(model)
        self.trim, self.trim_tokens = tower_decisions(self.preprocessing, self.text_tower, "token")

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def _encode_images(self, images):
        return self.model.encode_image(images)

    def _encode_texts(self, texts):
        ids = self._tokens(texts)
        if self.trim.trim:
            return encode_cut(self.text_tower, ids)
        return self.model.encode_text(ids)

    def text_token_counts(self, texts):
        return tokenizer_counts(self.tokenizer, texts)

    def _plain_vit(self) -> bool:
        visual = self.model.visual
        return (hasattr(visual, "conv1") and hasattr(visual, "transformer")
                and getattr(visual, "attn_pool", None) is None)

    def _token_tower(self) -> TextTower | None:
        """The open_clip text transformer whose tokens we read: None for Hugging Face text towers and
        for CoCa's, whose token outputs depend on the [CLS] appended after them."""
        tower = self.text_tower
        return tower if tower is not None and tower.cls_emb is None else None

    def supports(self, capability: str) -> bool:
        if not super().supports(capability):
            return False
        if capability in ("image_patches", "image_features"):
            return self._plain_vit()
        return self._token_tower() is not None

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
        tower = self._token_tower()
        if tower is None:
            raise UnsupportedCapability(f"model {self.identity.name!r}: per-token text embeddings need an open_clip "
                                        f"text transformer without an appended [CLS], found "
                                        f"{type(getattr(self.model, 'text', None)).__name__}")
        ids = self._tokens(texts)
        n = cut_length(tower, ids, "none") if self.trim_tokens.trim else ids.shape[1]
        x = project(tower, tower_tokens(tower, ids[:, :n]))
        return pad_tokens(x, ids[:, :n] != tower.pad_id, ids.shape[1])


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


HF_HUB = "hf-hub:"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "vocab.txt", "merges.txt", "*.model")


def _is_file(pretrained: str) -> bool:
    p = Path(pretrained).expanduser()
    return p.suffix in WEIGHT_SUFFIXES or p.exists()


def _tag_cfg(open_clip, arch: str, tag: str) -> dict:
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise UnknownNameError(f"open_clip pretrained tag for {arch} (or a weights file: no such file)", tag,
                               open_clip.list_pretrained_tags_by_model(arch) or ["(none)"])
    return cfg


def _hub_tokenizer(open_clip, folder: Path, config: dict, repo: str, commit: str):
    """The tokenizer of an ``hf-hub:`` model: open_clip's own unless its config names a Hugging Face
    tokenizer; that one's files are fetched from the model repo at the same commit (open_clip reads them
    from the model's folder), or from the repo the config names."""
    text = (config.get("model_cfg") or {}).get("text_cfg") or {}
    name = text.get("hf_tokenizer_name")
    if name and name != repo:
        return open_clip.tokenizer.HFTokenizer(name, context_length=text.get("context_length", 77),
                                               tokenizer_mode=text.get("tokenizer_mode"),
                                               **(text.get("tokenizer_kwargs") or {}))
    if name:
        hub.fetch_snapshot(repo, revision=commit, patterns=TOKENIZER_FILES)
    return open_clip.get_tokenizer(f"local-dir:{folder}")


def load(spec: str, pretrained: str | None = None, *, device: torch.device, precision: str,
         name: str, seed: int = 0, preprocessing: dict | None = None, dense: str = "direct") -> OpenClipAdapter:
    """Build ``open_clip:ARCH`` or ``open_clip:hf-hub:ORG/NAME[@REV]`` (``spec`` without the prefix)."""
    open_clip = open_clip_module()
    arch = spec.split(":", 1)[1]
    weights_file: Path | None = None
    weights_sha: str | None = None
    source: dict | None = None
    tag_cfg: dict = {}
    tokenizer = None
    if arch.startswith(HF_HUB):
        if pretrained:
            raise ModelLoadError(f"open_clip:{arch}: the Hub repo carries its weights; drop --pretrained "
                                 f"{pretrained!r} (or use open_clip:ARCH --pretrained FILE)")
        fetched = hub.fetch_open_clip_hub(arch[len(HF_HUB):])
        folder = fetched.config.path.parent
        try:
            config = json.loads(fetched.config.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{fetched.config.repo}/{fetched.config.filename}: not a readable open_clip config "
                                 f"({e})") from None
        if not isinstance(config, dict) or "model_cfg" not in config:
            raise ModelLoadError(f"{fetched.config.repo}/{fetched.config.filename}: no 'model_cfg'; not an open_clip "
                                 f"model repo (for a transformers model use hf:{arch[len(HF_HUB):]})")
        model_name = f"local-dir:{folder}"
        weights_file, weights_sha = fetched.weights.path, fetched.weights.sha256
        source = {**fetched.weights.record(), "config_sha256": fetched.config.sha256}
        tokenizer = _hub_tokenizer(open_clip, folder, config, fetched.config.repo, fetched.config.commit)
    else:
        if arch not in open_clip.list_models():
            raise UnknownNameError("open_clip architecture", arch, open_clip.list_models())
        model_name = arch
        if pretrained and _is_file(pretrained):
            weights_file = Path(pretrained).expanduser()
        elif pretrained:
            tag_cfg = _tag_cfg(open_clip, arch, pretrained)
            fetched = hub.fetch_open_clip_tag(arch, pretrained, tag_cfg)
            weights_file, weights_sha, source = fetched.weights.path, fetched.weights.sha256, fetched.weights.record()
    force_pre = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}

    def create(image_size: int | None = None):
        logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded: we load them
        try:
            return open_clip.create_model(model_name, pretrained=None, load_weights=False, pretrained_text=False,
                                          force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
                                          force_preprocess_cfg=force_pre or None, force_image_size=image_size)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"open_clip:{arch}: cannot build the model ({e})") from None
        finally:
            logging.disable(logging.NOTSET)

    state = load_state_dict(weights_file) if weights_file is not None else None  # refused before anything is built
    torch.manual_seed(seed)
    model = create()
    if weights_file is not None:
        load_into(model, state, weights_file, f"open_clip:{arch}")
        del state
        weights_sha = weights_sha or sha256_file(weights_file)
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
    tokenizer = tokenizer or open_clip.get_tokenizer(arch)
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
    identity = ModelIdentity(spec=spec, pretrained=pretrained, name=name, weights_sha256=weights_sha, source=source)
    return OpenClipAdapter(model, tokenizer, dense=dense, identity=identity, image_transform=build_image_transform(pre),
                           preprocessing=pre, device=device, precision=precision)


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity before loading, without any request: the spec, the tag or file, the file's sha256, and for
    Hub weights already in the local cache their blob name (the Hub's sha256). Weights not cached yet are
    identified by the strings alone; loading then records their sha256 and commit."""
    arch = spec.split(":", 1)[1]
    if arch.startswith(HF_HUB):
        try:
            repo, revision = hub.parse_repo_ref(arch[len(HF_HUB):], "open_clip hf-hub: model")
        except ConfigError:
            return spec_fingerprint(spec, pretrained)
        blobs = hub.cached_blobs(repo, revision=revision, filenames=hub.OPEN_CLIP_WEIGHTS)
        return spec_fingerprint(spec, pretrained, *sorted(blobs.items()))
    if not pretrained or _is_file(pretrained):
        return spec_fingerprint(spec, pretrained)
    cfg = open_clip_module().get_pretrained_cfg(arch, pretrained) or {}
    source = hub.open_clip_tag_source(cfg)
    blobs = hub.cached_blobs(source[0], filenames=source[1]) if source else {}
    return spec_fingerprint(spec, pretrained, *sorted(blobs.items()))
