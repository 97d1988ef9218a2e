"""``hf:DIR_OR_NAME``: Hugging Face transformers CLIPModel and SiglipModel with their own processors.

``hf:DIR`` loads a folder written by ``save_pretrained()``; ``hf:ORG/NAME[@REV]`` fetches the repo's
configs, tokenizer and processor files and weights (safetensors when the repo has them) on first use into
the standard Hugging Face cache (``hub.fetch_hf_model``: checked against the Hub's sha256, recorded in
``identity.source``; ``--offline`` / ``HF_HUB_OFFLINE=1`` read the cache only), then loads that folder
with ``local_files_only=True`` (transformers loads pickled ``.bin`` weights with ``weights_only``). Images go
through the model's own image processor unless a preprocessing override is given; texts through its
tokenizer with the model's padding: CLIP pads to the longest caption, SigLIP to ``max_length`` (64),
which is how SigLIP was trained; padding it like CLIP silently lowers its scores.

Pre-projection features: the vision model's pooled output (CLIP: class token after ``post_layernorm``,
before ``visual_projection``; SigLIP: its attention-pool head, which is also its embedding). Dense
outputs: CLIP patch embeddings are the final patch tokens after ``post_layernorm`` through
``visual_projection`` (``dense=direct``) or MaskCLIP's value path (``dense=maskclip``); token embeddings
are the text model's final tokens through ``text_projection``. SigLIP: ``post_layernorm`` patch tokens
(its joint space has the vision width) and text tokens through the text head. A ``--resolution`` other
than the model's interpolates the position embeddings (``interpolate_pos_encoding``). Needs
transformers 5 (encoder layers take the attention mask by keyword).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .. import hub
from ..checkpoint_io import check_finite_tensors, folder_weights_sha256
from ..errors import ConfigError, ModelLoadError
from .base import ModelAdapter, ModelIdentity, PatchEmbeddings, UnsupportedCapability, spec_fingerprint
from .text_batching import TrimDecision, pad_tokens, record, requested
from .transforms import apply_overrides, build_image_transform

SUPPORTED = ("clip", "siglip")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class _ProcessorTransform:
    """PIL image -> pixel tensor through the model's own image processor (picklable for workers)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, img):
        img = img if img.mode == "RGB" else img.convert("RGB")
        return self.image_processor(images=img, return_tensors="pt")["pixel_values"][0]


def _features(out) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.pooler_output


class HFAdapter(ModelAdapter):
    """``interpolate``: the input resolution differs from the model's, so its position embeddings are
    interpolated (transformers' ``interpolate_pos_encoding``)."""

    def __init__(self, model, tokenizer, model_type: str, context_length: int, dense: str = "direct",
                 interpolate: bool = False, **kw):
        super().__init__(**kw)
        self.model, self.tokenizer, self.model_type = model, tokenizer, model_type
        self.context_length, self.dense, self.interpolate = context_length, dense, interpolate
        self.preprocessing = dict(self.preprocessing)  # the decision is recorded in our own copy
        self.trim = hf_decision(model_type, requested(self.preprocessing))
        record(self.preprocessing, self.trim)

    def supports(self, capability: str) -> bool:
        if capability == "image_patches" and self.model_type == "siglip" and self.dense == "maskclip":
            return False
        return super().supports(capability)

    def _tokenize(self, texts):
        padding = "longest" if self.trim.trim else "max_length"
        enc = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def text_token_counts(self, texts):
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # counting lengths of long texts is the point here
        try:
            ids = self.tokenizer(list(texts), truncation=False)["input_ids"]
        finally:
            transformers.logging.set_verbosity(verbosity)
        return [len(i) for i in ids]

    def _encode_images(self, images):
        return _features(self.model.get_image_features(pixel_values=images,
                                                       interpolate_pos_encoding=self.interpolate))

    def _encode_texts(self, texts):
        enc = self._tokenize(texts)
        if self.model_type == "siglip":
            enc.pop("attention_mask", None)  # SigLIP was trained without a text attention mask
        return _features(self.model.get_text_features(**enc))

    def _encode_image_features(self, images):
        return self.model.vision_model(pixel_values=images, interpolate_pos_encoding=self.interpolate).pooler_output

    def _encode_image_patches(self, images):
        vm = self.model.vision_model
        if self.model_type == "clip":
            hidden = vm.embeddings(images, interpolate_pos_encoding=self.interpolate)
            hidden = vm.pre_layrnorm(hidden)
            layers = list(vm.encoder.layers)
            for layer in layers[:-1]:
                hidden = _layer_out(layer(hidden, attention_mask=None))
            last = layers[-1]
            hidden = (_maskclip_layer(last, hidden) if self.dense == "maskclip"
                      else _layer_out(last(hidden, attention_mask=None)))
            tokens = self.model.visual_projection(vm.post_layernorm(hidden[:, 1:]))
        else:
            if self.dense == "maskclip":
                raise UnsupportedCapability("dense=maskclip is defined for CLIP ViTs; SigLIP has no class token")
            # last_hidden_state already has post_layernorm applied (SiglipVisionTransformer)
            tokens = vm(pixel_values=images, interpolate_pos_encoding=self.interpolate).last_hidden_state
        n = tokens.shape[1]
        side = round(n ** 0.5)
        if side * side != n:
            raise UnsupportedCapability(f"patch grid of {n} tokens is not square")
        return PatchEmbeddings(tokens, (side, side))

    def _encode_text_tokens(self, texts):
        enc = self._tokenize(texts)
        if self.model_type == "clip":
            hidden = self.model.text_model(**enc).last_hidden_state
            tokens = self.model.text_projection(hidden)
            mask = enc["attention_mask"].bool()
        else:
            ids = enc["input_ids"]
            hidden = self.model.text_model(input_ids=ids).last_hidden_state
            tokens = self.model.text_model.head(hidden)
            pad = self.tokenizer.pad_token_id
            mask = ids != pad if pad is not None else torch.ones_like(ids, dtype=torch.bool)
        return pad_tokens(tokens, mask, self.context_length)


def hf_decision(model_type: str, enabled: bool) -> TrimDecision:
    """CLIP's text model is causal with an attention mask and pools at the end token, so padding to the
    batch's longest text is exact; SigLIP's attends to its padding (no mask) and pools the last position."""
    if model_type == "siglip":
        return TrimDecision(False, "SigLIP text model: no attention mask, pooled at the last position")
    if not enabled:
        return TrimDecision(False, "turned off (trim_text: false)")
    return TrimDecision(True, "exact: causal attention with the padding masked, end-token pooling")


def _layer_out(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _maskclip_layer(layer, hidden):
    """MaskCLIP value path through a transformers CLIPEncoderLayer (attention bypassed)."""
    h = layer.layer_norm1(hidden)
    v = layer.self_attn.v_proj(h)
    hidden = hidden + layer.self_attn.out_proj(v)
    return hidden + layer.mlp(layer.layer_norm2(hidden))


def _resolve_dir(name: str) -> tuple[Path, dict | None]:
    """The model folder of ``hf:NAME`` and, for a Hub repo, the snapshot's record (repo, commit, file sums)."""
    p = Path(name).expanduser()
    if p.is_dir():
        return p, None
    try:
        hub.parse_repo_ref(name, "hf: model")
    except ConfigError:
        raise ModelLoadError(f"hf:{name}: not a folder, and not a Hugging Face repo id ORG/NAME[@REVISION]; pass a "
                             f"folder saved with save_pretrained() or a repo id such as openai/clip-vit-base-patch32"
                             ) from None
    snapshot = hub.fetch_hf_model(name)
    return snapshot.folder, snapshot.record()


def _field(obj, key: str):
    """A size field from a dict, an int (shortest edge) or a transformers SizeDict."""
    if obj is None:
        return None
    if isinstance(obj, int):
        return obj if key == "shortest_edge" else None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _processor_preprocessing(ip) -> dict:
    shortest = _field(ip.size, "shortest_edge")
    if shortest and getattr(ip, "do_center_crop", False):
        res, mode = _field(getattr(ip, "crop_size", None), "height") or shortest, "center"
    elif shortest:
        res, mode = shortest, "center"
    else:
        res, mode = _field(ip.size, "height"), "squash"
    resample = getattr(ip, "resample", 3)
    return {"resolution": int(res), "interpolation": _RESAMPLE.get(int(resample), "bicubic"), "crop": mode,
            "mean": [float(m) for m in ip.image_mean], "std": [float(s) for s in ip.image_std]}


def load(spec: str, pretrained: str | None = None, *, device: torch.device, precision: str, name: str,
         seed: int = 0, preprocessing: dict | None = None, dense: str = "direct") -> HFAdapter:
    """Load ``hf:DIR_OR_NAME`` (``pretrained`` is not used: the folder holds the weights)."""
    import transformers

    folder, source = _resolve_dir(spec.split(":", 1)[1])
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"{folder}: no config.json; expected a folder written by save_pretrained()")
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{folder / 'config.json'}: not a transformers config ({e})") from None
    mt = config.model_type
    if mt not in SUPPORTED:
        raise ModelLoadError(f"{folder / 'config.json'}: model_type {mt!r} is not supported by hf:; "
                             f"expected one of {', '.join(SUPPORTED)}")
    cls = transformers.CLIPModel if mt == "clip" else transformers.SiglipModel
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # no load-time progress bars or advisory warnings
    transformers.logging.disable_progress_bar()
    try:
        model = cls.from_pretrained(folder, local_files_only=True, use_safetensors=None)
        processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
    except pickle.UnpicklingError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"{folder}: refused to load: a weights file holds Python objects other than tensors, "
                             f"and unpickling them could execute code ({first}). Re-save the model with "
                             f"save_pretrained(safe_serialization=True)") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{folder}: cannot load the {cls.__name__} or its processor "
                             f"({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    check_finite_tensors(model.state_dict(), folder)
    model.eval().to(device)
    ip, tok = processor.image_processor, processor.tokenizer
    ctx = int(config.text_config.max_position_embeddings)
    if mt == "siglip":
        ctx = min(ctx, int(getattr(tok, "model_max_length", ctx) or ctx))
    base = _processor_preprocessing(ip)
    base.update({"context_length": ctx, "text_padding": "max_length" if mt == "siglip" else "longest",
                 "tokenizer": type(tok).__name__, "dense": dense})
    pre, changed = apply_overrides(base, preprocessing)
    transform = build_image_transform(pre) if changed else _ProcessorTransform(ip)
    pre["image_pipeline"] = "torchvision" if changed else "hf_processor"
    native = int(config.vision_config.image_size)
    interpolate = int(pre["resolution"]) != native
    if interpolate:
        pre["resized"] = (f"position embeddings interpolated (transformers interpolate_pos_encoding) from {native} px "
                          f"to {int(pre['resolution'])} px")
    identity = ModelIdentity(spec=spec, pretrained=pretrained, name=name, weights_sha256=folder_weights_sha256(folder),
                             source=source)
    return HFAdapter(model, tok, mt, ctx, dense=dense, interpolate=interpolate, identity=identity,
                     image_transform=transform, preprocessing=pre, device=device, precision=precision)


def fingerprint(spec: str, pretrained: str | None) -> str:
    """Identity before loading, without any request: the strings plus the weights of a local model folder,
    or the blob names (the Hub's sha256) of a Hub repo's weights already in the local cache (not cached yet:
    the strings alone; loading then records the sha256 and commit)."""
    target = spec.split(":", 1)[1]
    folder = Path(target).expanduser()
    extra: list = []
    if folder.is_dir():
        try:
            extra.append(folder_weights_sha256(folder))
        except ModelLoadError:
            pass  # no weights: loading says so
        return spec_fingerprint(spec, pretrained, *extra)
    try:
        repo, revision = hub.parse_repo_ref(target, "hf: model")
    except ConfigError:
        return spec_fingerprint(spec, pretrained)
    blobs = hub.cached_blobs(repo, revision=revision, patterns=("*.safetensors", "pytorch_model*.bin"))
    weights = hub.hf_model_files(sorted(blobs))
    return spec_fingerprint(spec, pretrained, *[(n, blobs[n]) for n in weights])
