"""Model loaders behind the adapter contract: open_clip, transformers (CLIP, SigLIP), py:; safe weight IO."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from conftest import TINY_OPEN_CLIP
from PIL import Image

from sparc_eval.checkpoint_io import load_state_dict
from sparc_eval.errors import ModelLoadError
from sparc_eval.fileio import sha256_file
from sparc_eval.models import load_model

TEXTS = ["a red circle to the left of a blue square", "two yellow stars", "a small green cross in the center"]


def _images(model, n=3):
    imgs = [Image.new("RGB", (80, 64), (40 * i, 100, 200 - 30 * i)) for i in range(n)]
    return torch.stack([model.image_transform(im) for im in imgs])


@pytest.fixture(scope="module")
def tiny():
    return load_model(TINY_OPEN_CLIP, seed=0)


def test_random_init_is_seeded_and_normalised(tiny):
    again = load_model(TINY_OPEN_CLIP, seed=0)
    other = load_model(TINY_OPEN_CLIP, seed=1)
    x = _images(tiny)
    a, b = tiny.encode_images(x), again.encode_images(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, other.encode_images(x))
    assert torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert tiny.identity.weights_sha256 == again.identity.weights_sha256 != other.identity.weights_sha256
    t = tiny.encode_texts(TEXTS)
    assert t.shape == (3, 64) and torch.allclose(t.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_dense_outputs_of_open_clip_vit(tiny):
    patches = tiny.encode_image_patches(_images(tiny, 2))
    assert patches.embeddings.shape == (2, 64, 64) and patches.grid == (8, 8)
    tokens, mask = tiny.encode_text_tokens(TEXTS[:2])
    assert tokens.shape == (2, 32, 64)
    assert mask.sum(1).tolist() == [len(tiny.tokenizer.encode(t)) + 2 for t in TEXTS[:2]]
    # the pooled text embedding is the token embedding at the end-of-text position
    eot = mask.sum(1) - 1
    pooled = torch.nn.functional.normalize(tokens[torch.arange(2), eot], dim=-1)
    assert torch.allclose(pooled, tiny.encode_texts(TEXTS[:2]), atol=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "training_pt"])
def test_open_clip_weights_file_loads_exactly(tiny, tmp_path, fmt):
    state = {k: v.clone() + 0.01 for k, v in tiny.model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    else:  # an open_clip training checkpoint: epoch, optimizer, state_dict with DDP "module." prefixes
        path = tmp_path / "epoch_3.pt"
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    m = load_model(TINY_OPEN_CLIP, str(path))
    assert all(torch.equal(m.model.state_dict()[k], v) for k, v in state.items())
    assert m.identity.weights_sha256 == sha256_file(path)
    assert m.identity.name == "open_clip-vit-tiny-8-64-" + (f"{tmp_path.name}-w" if fmt == "safetensors"
                                                            else f"{tmp_path.name}-epoch_3").lower()


def test_wrong_architecture_lists_keys(tmp_path):
    small = load_model("open_clip:ViT-Small-16-224")
    path = tmp_path / "small.pt"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"shape mismatches: .*\(file .*model .*different architecture"):
        load_model(TINY_OPEN_CLIP, str(path))


def test_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    state = dict(tiny.model.state_dict())
    state.pop("logit_scale")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"missing keys: logit_scale; unexpected keys: extra.weight"):
        load_model(TINY_OPEN_CLIP, str(path))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_checkpoint(tiny, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(tiny.model.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(dict(tiny.model.state_dict()), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(TINY_OPEN_CLIP, str(path))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_executes_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump(_Exploit(marker), f)
    for p in (path, tmp_path / "evil.bin"):
        with pytest.raises(ModelLoadError, match="refused to load|cannot read the checkpoint"):
            load_state_dict(p)
    assert not marker.exists()


def test_pretrained_tag_offline_reads_only_the_cache(tmp_path, monkeypatch):
    """Offline (the test session's HF_HUB_OFFLINE=1), a tag whose weights are not cached is exit 2 naming the
    command that fetches them (downloads themselves: tests/test_first_contact_cli.py, against the stand-in)."""
    from sparc_eval.hub import HubOfflineMiss

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HubOfflineMiss, match=r"not in the Hugging Face cache, and offline mode is on .*"
                                             r"`hf download timm/vit_base_patch32_clip_224.openai "
                                             r"open_clip_model.safetensors`"):
        load_model("open_clip:ViT-B-32", "openai")
    with pytest.raises(ModelLoadError, match="not a folder, and not a Hugging Face repo id"):
        load_model(f"hf:{tmp_path}/absent")


def test_hf_clip_matches_transformers(hf_clip_dir):
    import transformers

    m = load_model(f"hf:{hf_clip_dir}")
    ref = transformers.CLIPModel.from_pretrained(hf_clip_dir).eval()
    proc = transformers.CLIPProcessor.from_pretrained(hf_clip_dir)
    imgs = [Image.new("RGB", (90, 70), (200, 30 * i, 50)) for i in range(2)]
    x = torch.stack([m.image_transform(im) for im in imgs])
    expect = proc(images=imgs, return_tensors="pt")["pixel_values"]
    assert torch.equal(x, expect)
    with torch.no_grad():
        want_img = torch.nn.functional.normalize(ref.get_image_features(pixel_values=expect).pooler_output, dim=-1)
        enc = proc(text=TEXTS, padding=True, return_tensors="pt")
        want_txt = torch.nn.functional.normalize(ref.get_text_features(**enc).pooler_output, dim=-1)
    assert torch.allclose(m.encode_images(x), want_img, atol=1e-6)
    assert torch.allclose(m.encode_texts(TEXTS), want_txt, atol=1e-6)
    assert m.preprocessing["text_padding"] == "longest" and m.preprocessing["resolution"] == 64


def test_hf_siglip_pads_to_max_length(hf_siglip_dir):
    import transformers

    m = load_model(f"hf:{hf_siglip_dir}")
    ref = transformers.SiglipModel.from_pretrained(hf_siglip_dir).eval()
    tok = transformers.AutoProcessor.from_pretrained(hf_siglip_dir).tokenizer
    with torch.no_grad():
        ids = tok(TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="pt")["input_ids"]
        want = torch.nn.functional.normalize(ref.get_text_features(input_ids=ids).pooler_output, dim=-1)
        short = ["a red circle", "two yellow stars"]
        longest = tok(short, padding=True, return_tensors="pt")["input_ids"]
        assert longest.shape[1] < 16
        unpadded = torch.nn.functional.normalize(ref.get_text_features(input_ids=longest).pooler_output, dim=-1)
    assert torch.allclose(m.encode_texts(TEXTS), want, atol=1e-6)
    assert not torch.allclose(m.encode_texts(short), unpadded, atol=1e-3)  # padding matters for SigLIP
    assert m.preprocessing["text_padding"] == "max_length"
    assert m.truncated(["a " * 40, "a red circle"]) == [True, False]


def test_preprocessing_override_changes_transform_and_record(tiny):
    m = load_model(TINY_OPEN_CLIP, preprocessing={"resolution": 96, "interpolation": "bilinear", "crop": "squash"})
    x = m.image_transform(Image.new("RGB", (50, 30)))
    assert x.shape == (3, 96, 96)
    assert m.preprocessing["resolution"] == 96 and m.preprocessing["crop"] == "squash"
    assert tiny.preprocessing["resolution"] == 64 and tiny.preprocessing["interpolation"] == "bicubic"


def test_py_spec_with_module_tuple(tmp_path, tiny):
    src = tmp_path / "mymodel.py"
    src.write_text(
        "import open_clip\n"
        "from sparc_eval.open_clip_configs import open_clip_module\n"
        "def build(seed=0):\n"
        "    open_clip_module()\n"
        "    model, _, pre = open_clip.create_model_and_transforms('ViT-Tiny-8-64')\n"
        "    return model, pre, open_clip.get_tokenizer('ViT-Tiny-8-64')\n")
    m = load_model(f"py:{src}:build", seed=0)
    assert torch.allclose(m.encode_texts(TEXTS), tiny.encode_texts(TEXTS), atol=1e-6)
    with pytest.raises(ModelLoadError, match="has no callable named 'nope'"):
        load_model(f"py:{src}:nope")


def test_pre_projection_features_project_to_the_embeddings(tiny, hf_clip_dir):
    x = _images(tiny)
    feats = tiny.encode_image_features(x)
    assert feats.shape == (3, 128)  # the ViT width, before the 64-d projection
    projected = torch.nn.functional.normalize(feats @ tiny.model.visual.proj, dim=-1)
    assert torch.allclose(projected, tiny.encode_images(x), atol=1e-5)
    hf = load_model(f"hf:{hf_clip_dir}")
    xh = _images(hf)
    fh = hf.encode_image_features(xh)
    assert fh.shape == (3, 64)
    projected = torch.nn.functional.normalize(hf.model.visual_projection(fh), dim=-1)
    assert torch.allclose(projected, hf.encode_images(xh), atol=1e-5)
    assert tiny.supports("image_features") and hf.supports("image_features")


def test_hf_patch_tokens_agree_with_transformers(hf_clip_dir, hf_siglip_dir):
    """SigLIP's last_hidden_state is already layer-normalised (not twice); CLIP's patch tokens are its final
    tokens through post_layernorm and the projection; another resolution interpolates the positions."""
    import transformers

    sig = load_model(f"hf:{hf_siglip_dir}")
    x = _images(sig, 2)
    ln = sig.model.vision_model.post_layernorm
    with torch.no_grad():  # a trained (non-identity) affine, else LN(LN(x)) = LN(x) hides a second application
        ln.weight.copy_(torch.linspace(0.5, 2.0, ln.weight.numel()))
        ln.bias.copy_(torch.linspace(-1.0, 1.0, ln.bias.numel()))
        want = sig.model.vision_model(pixel_values=x).last_hidden_state
    got = sig.encode_image_patches(x)
    assert got.grid == (8, 8) and torch.allclose(got.embeddings, want, atol=1e-5)
    assert sig.supports("image_patches") and not load_model(f"hf:{hf_siglip_dir}", dense="maskclip").supports(
        "image_patches")

    clip = load_model(f"hf:{hf_clip_dir}")
    ref = transformers.CLIPModel.from_pretrained(hf_clip_dir).eval()
    x = _images(clip, 2)
    with torch.no_grad():
        hidden = ref.vision_model(pixel_values=x).last_hidden_state
        want = ref.visual_projection(ref.vision_model.post_layernorm(hidden[:, 1:]))
    got = clip.encode_image_patches(x)
    assert got.grid == (8, 8) and torch.allclose(got.embeddings, want, atol=1e-5)
    big = load_model(f"hf:{hf_clip_dir}", preprocessing={"resolution": 96})
    xb = _images(big, 2)
    assert xb.shape[-1] == 96 and big.encode_image_patches(xb).grid == (12, 12)
    assert big.encode_images(xb).shape == (2, 32) and big.encode_image_features(xb).shape == (2, 64)


def test_py_models_keep_their_device_and_track_their_source(tmp_path):
    body = ("from sparc_eval.models import load_model\n"
            "def build(seed=0):\n"
            "    return load_model('open_clip:ViT-Tiny-8-64', seed=seed)\n"
            "def build_on(device, seed=0):\n"
            "    return load_model('open_clip:ViT-Tiny-8-64', seed=seed, device=device)\n")
    src = tmp_path / "mine.py"
    src.write_text(body)
    kept = load_model(f"py:{src}:build", device="meta")
    assert kept.device == torch.device("cpu")  # the callable ignored the device: its weights are on the CPU
    moved = load_model(f"py:{src}:build_on", device="meta")
    assert moved.device == torch.device("meta") and next(moved.model.parameters()).device.type == "meta"
    src.write_text(body + "# edited\n")
    edited = load_model(f"py:{src}:build", device="cpu")
    assert edited.identity.weights_sha256 != kept.identity.weights_sha256  # cached embeddings are not reused
