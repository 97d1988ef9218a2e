"""The backbone bridge: vision towers of every adapter kind, the ViTDet pyramid, layer-wise lr decay."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_OPEN_CLIP

from sparc_eval.errors import ModelLoadError
from sparc_eval.models import load_model
from sparc_eval.transfer.backbone import TransferBackbone, hand_over
from sparc_eval.transfer.pyramid import SimpleFeaturePyramid
from sparc_eval.transfer.towers import VisionTower, tower_from_adapter

CONVNEXT_ARCH = "sparc-test-convnext-atto"


def _pyramid_shapes(tower: VisionTower, h: int, w: int) -> list[tuple]:
    """Shapes of the maps the detection neck produces for a [2, 3, h, w] batch."""
    with torch.no_grad():
        maps = tower(torch.randn(2, 3, h, w))
        if tower.hierarchical:
            return [tuple(m.shape) for m in maps]
        neck = SimpleFeaturePyramid(tower.channels[-1], tower.strides[-1], out_channels=16)
        return [tuple(m.shape) for m in neck(maps)]


def test_open_clip_vit_tower_and_pyramid_at_any_input_size():
    adapter = load_model(TINY_OPEN_CLIP, device="cpu")
    tower = tower_from_adapter(adapter)
    assert (tower.kind, tower.channels, tower.strides, tower.num_layers) == ("open_clip-vit", [128], [8], 2)
    # ViT-Tiny-8-64 was built for 64 px (8x8 patches); 96x128 needs resampled position embeddings.
    assert _pyramid_shapes(tower, 96, 128) == [(2, 16, 24, 32), (2, 16, 12, 16), (2, 16, 6, 8), (2, 16, 3, 4),
                                               (2, 16, 2, 2)]
    # At the native size the tower's tokens are exactly the model's own last-block patch tokens.
    x = torch.randn(2, 3, 64, 64)
    visual = adapter.model.visual
    with torch.no_grad():
        ref = visual.transformer(visual._embeds(x))[:, 1:]
        ours = tower(x)[0]
    assert torch.allclose(ours.flatten(2).transpose(1, 2), ref, atol=1e-5)
    normed = tower_from_adapter(adapter, final_norm=True)
    with torch.no_grad():
        assert torch.allclose(normed(x)[0].flatten(2).transpose(1, 2), visual.ln_post(ref), atol=1e-5)


def test_tower_is_a_copy_and_a_frozen_backbone_gets_no_gradient():
    adapter = load_model(TINY_OPEN_CLIP, device="cpu")
    before = {k: v.clone() for k, v in adapter.model.visual.state_dict().items()}
    backbone = TransferBackbone(tower_key=hand_over(tower_from_adapter(adapter)), frozen=True)
    backbone.train()
    assert not backbone.tower.training
    assert not any(p.requires_grad for p in backbone.parameters())
    out = backbone(torch.randn(1, 3, 64, 64))[0]
    assert not out.requires_grad
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)
    after = adapter.model.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hf_clip_tower(hf_clip_dir):
    adapter = load_model(f"hf:{hf_clip_dir}", device="cpu")
    tower = tower_from_adapter(adapter)
    assert (tower.kind, tower.channels, tower.strides, tower.num_layers) == ("hf-clip", [64], [8], 2)
    assert _pyramid_shapes(tower, 128, 96) == [(2, 16, 32, 24), (2, 16, 16, 12), (2, 16, 8, 6), (2, 16, 4, 3),
                                               (2, 16, 2, 2)]
    x = torch.randn(1, 3, 64, 64)
    vm = adapter.model.vision_model
    with torch.no_grad():
        ref = vm(pixel_values=x).last_hidden_state[:, 1:]
        ours = tower(x)[0].flatten(2).transpose(1, 2)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_hf_siglip_tower(hf_siglip_dir):
    adapter = load_model(f"hf:{hf_siglip_dir}", device="cpu")
    tower = tower_from_adapter(adapter, final_norm=True)
    assert (tower.kind, tower.channels, tower.strides) == ("hf-siglip", [64], [8])
    assert _pyramid_shapes(tower, 64, 64) == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4), (2, 16, 2, 2),
                                              (2, 16, 1, 1)]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = adapter.model.vision_model(pixel_values=x).last_hidden_state  # post_layernorm applied, no CLS
        ours = tower(x)[0].flatten(2).transpose(1, 2)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_sparc_checkpoint_tower(tmp_path):
    from sparc_eval.pretrain.checkpoint import save_checkpoint
    from sparc_eval.pretrain.model import DualEncoder, ModelConfig, default_preprocessing

    cfg = ModelConfig(arch="ViT-Tiny-8-64")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "run", 0, DualEncoder(cfg), preprocessing=default_preprocessing(cfg),
                           loss="sparc")
    adapter = load_model(f"sparc:{ckpt}", device="cpu")
    tower = tower_from_adapter(adapter, final_norm=True)  # SPARC's dual encoder is built from open_clip towers
    assert (tower.kind, tower.channels, tower.strides) == ("open_clip-vit", [128], [8])
    assert _pyramid_shapes(tower, 64, 96) == [(2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6), (2, 16, 2, 3),
                                              (2, 16, 1, 2)]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the final-normed tower output is SPARC's per-patch f_v
        assert torch.allclose(tower(x)[0].flatten(2).transpose(1, 2), adapter.model.image_features(x), atol=1e-5)


def test_open_clip_convnext_tower_is_hierarchical(tmp_path):
    import open_clip

    cfg = {"embed_dim": 32, "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False,
                                           "timm_pool": "", "timm_proj": "linear", "image_size": 64},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{CONVNEXT_ARCH}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    adapter = load_model(f"open_clip:{CONVNEXT_ARCH}", device="cpu")
    tower = tower_from_adapter(adapter)
    assert (tower.kind, tower.hierarchical, tower.strides, tower.channels) == (
        "open_clip-timm", True, [4, 8, 16, 32], [40, 80, 160, 320])
    assert _pyramid_shapes(tower, 64, 96) == [(2, 40, 16, 24), (2, 80, 8, 12), (2, 160, 4, 6), (2, 320, 2, 3)]
    assert tower.layer_id("stem.0.weight") == 0 and tower.layer_id("stages.3.blocks.0.conv_dw.weight") == 4
    with pytest.raises(ModelLoadError, match="needs a ViT"):
        tower_from_adapter(adapter, final_norm=True)


def test_pyramid_for_patch_16_and_patch_14():
    p16 = SimpleFeaturePyramid(32, 16, out_channels=8)
    shapes = [tuple(m.shape) for m in p16([torch.randn(1, 32, 8, 8)])]
    assert shapes == [(1, 8, 32, 32), (1, 8, 16, 16), (1, 8, 8, 8), (1, 8, 4, 4), (1, 8, 2, 2)]
    # ViTDet's 4x branch: two transposed convolutions halving the channels each time.
    deconvs = [m for m in p16.branches[0] if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(d.in_channels, d.out_channels) for d in deconvs] == [(32, 16), (16, 8)]
    # Patch 14 (224 px -> 16x16 grid): strides 4..32 of a 224 px image by resampling.
    p14 = SimpleFeaturePyramid(32, 14, out_channels=8, extra_level=False)
    assert [tuple(m.shape[-2:]) for m in p14([torch.randn(1, 32, 16, 16)])] == [(56, 56), (28, 28), (14, 14),
                                                                                (7, 7)]


def test_layer_decay_groups():
    from sparc_eval.transfer import registry  # noqa: F401 - registers the optimizer constructor
    from sparc_eval.transfer.optim import LayerDecayOptimWrapperConstructor

    adapter = load_model(TINY_OPEN_CLIP, device="cpu")
    model = torch.nn.Module()
    model.backbone = TransferBackbone(tower_key=hand_over(tower_from_adapter(adapter)), frozen=False)
    model.head = torch.nn.Linear(4, 2)
    ctor = LayerDecayOptimWrapperConstructor(
        {"optimizer": {"type": "AdamW", "lr": 1.0, "weight_decay": 0.1}}, {"layer_decay": 0.5})
    groups = ctor(model).optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    # 2 blocks: embeddings 0.5**3, block i 0.5**(2 - i), final layers and heads 1.
    expect = {"backbone.tower.patch_embed.weight": (0.125, 0.1), "backbone.tower.pos_embed": (0.125, 0.0),
              "backbone.tower.cls_token": (0.125, 0.0), "backbone.tower.ln_pre.weight": (0.125, 0.0),
              "backbone.tower.blocks.0.attn.in_proj_weight": (0.25, 0.1),
              "backbone.tower.blocks.1.mlp.c_fc.bias": (0.5, 0.0), "head.weight": (1.0, 0.1), "head.bias": (1.0, 0.0)}
    for name, (lr, wd) in expect.items():
        g = by_param[id(named[name])]
        assert (g["lr"], g["weight_decay"]) == (pytest.approx(lr), wd), name
    assert sum(len(g["params"]) for g in groups) == len(named)
    frozen = torch.nn.Module()
    frozen.backbone = TransferBackbone(tower_key=hand_over(tower_from_adapter(adapter)), frozen=True)
    frozen.head = torch.nn.Linear(4, 2)
    kept = [p for g in ctor(frozen).optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in kept} == {id(frozen.head.weight), id(frozen.head.bias)}


def test_unknown_adapter_has_no_tower():
    class NoTower:
        class identity:
            name = "mystery"

    with pytest.raises(ModelLoadError, match="no vision tower found.*transfer_tower"):
        tower_from_adapter(NoTower())
