"""Zero-shot segmentation end to end: the MaskCLIP dense path recomputed by hand (open_clip and HF),
oracle CLI runs (mIoU 100; a class derangement scores its analytic value), the sliding-window
pipeline against an independent recomputation with mmseg's slide_inference, CLI runs of every
inference mode with a real model, and the bad inputs users make."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_OPEN_CLIP
from PIL import Image

from sparc_eval.models import load_model
from sparc_eval.results.aggregate import ClusterSums

ORACLES = Path(__file__).with_name("oracles_finegrained.py")


def _ln(x, ln):
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def test_maskclip_open_clip_equals_hand_recomputation():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    adapter = load_model(TINY_OPEN_CLIP, device="cpu", dense="maskclip")
    visual = adapter.model.visual
    last = visual.transformer.resblocks[-1]
    seen = {}
    handle = last.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0].detach().clone()))
    with torch.no_grad():
        visual(images)
    handle.remove()
    x = seen["x"]
    d = x.shape[-1]
    with torch.no_grad():
        v = _ln(x, last.ln_1) @ last.attn.in_proj_weight[2 * d:].T + last.attn.in_proj_bias[2 * d:]
        x = x + v @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
        m = last.mlp
        x = x + m.c_proj(m.gelu(_ln(x, last.ln_2) @ m.c_fc.weight.T + m.c_fc.bias))
        expected = _ln(x[:, 1:], visual.ln_post) @ visual.proj
    got = adapter.encode_image_patches(images)
    assert got.grid == (8, 8) and got.embeddings.shape == (2, 64, 64)
    assert torch.allclose(got.embeddings, expected, atol=1e-5)
    direct = load_model(TINY_OPEN_CLIP, device="cpu").encode_image_patches(images).embeddings
    assert not torch.allclose(direct, expected, atol=1e-3)


def test_maskclip_hf_equals_hand_recomputation(hf_clip_dir):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    adapter = load_model(f"hf:{hf_clip_dir}", device="cpu", dense="maskclip")
    model = adapter.model
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=images, output_hidden_states=True).hidden_states
        x = hidden[-2]  # the input of the last encoder layer
        layer = model.vision_model.encoder.layers[-1]
        att = layer.self_attn
        v = _ln(x, layer.layer_norm1) @ att.v_proj.weight.T + att.v_proj.bias
        x = x + v @ att.out_proj.weight.T + att.out_proj.bias
        mlp = layer.mlp
        x = x + mlp.fc2(mlp.activation_fn(_ln(x, layer.layer_norm2) @ mlp.fc1.weight.T + mlp.fc1.bias))
        expected = _ln(x[:, 1:], model.vision_model.post_layernorm) @ model.visual_projection.weight.T
    got = adapter.encode_image_patches(images)
    assert got.grid == (8, 8)
    assert torch.allclose(got.embeddings, expected, atol=1e-5)


def _run(runner, cli, args):
    result = runner.invoke(cli, ["run", "-q", *args])
    return result


def _result(out: Path, model: str, task: str) -> tuple[dict, list[dict]]:
    folder = out / model
    res = json.loads((folder / f"{task}.json").read_text())
    samples = [json.loads(line) for line in (folder / f"{task}.samples.jsonl").read_text().splitlines()] \
        if (folder / f"{task}.samples.jsonl").is_file() else []
    return res, samples


def _val_labels(world: Path) -> list[np.ndarray]:
    voc = world / "VOCdevkit/VOC2012"
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    return [np.asarray(Image.open(voc / "SegmentationClass" / f"{i}.png")) for i in ids]


def test_oracle_scores_100_and_deranged_classes_score_analytic_values(runner, cli, small_world, tmp_path):
    voc = f"root={small_world}/VOCdevkit/VOC2012"
    common = ["--task", "shapes-zeroshot-seg", "--pretrained", str(small_world), "--param", voc]
    out = tmp_path / "out"
    r = _run(runner, cli, [*common, "--model", f"py:{ORACLES}:seg_oracle", "--model-name", "oracle", "-o", str(out)])
    assert r.exit_code == 0, r.output
    res, samples = _result(out, "oracle", "shapes-zeroshot-seg")
    assert res["metrics"] == {"mIoU": 100.0, "mAcc": 100.0, "aAcc": 100.0}
    assert res["details"]["protocol"] == "sparc-paper" and len(samples) == res["dataset"]["n_used"] == 40
    r = _run(runner, cli, [*common, "--model", f"py:{ORACLES}:seg_oracle", "--model-name", "oracle21", "-o", str(out),
                           "--param", "reduce_zero_label=false", "--param", "background=prompt",
                           "--param", "protocol=standard", "--param", "upsample=bilinear"])
    assert r.exit_code == 0, r.output
    res, _ = _result(out, "oracle21", "shapes-zeroshot-seg")
    assert res["metrics"] == {"mIoU": 100.0, "mAcc": 100.0, "aAcc": 100.0}
    assert res["details"]["num_classes"] == 7 and res["details"]["per_class_IoU"]["background"] == 100.0

    labels = _val_labels(small_world)
    present = sorted({int(v) for lab in labels for v in np.unique(lab)} - {0, 255})
    background = sum(int((lab == 0).sum()) for lab in labels)
    valid = sum(int((lab != 255).sum()) for lab in labels)
    r = _run(runner, cli, [*common, "--model", f"py:{ORACLES}:seg_oracle_permuted", "--model-name", "perm",
                           "-o", str(out)])
    assert r.exit_code == 0, r.output
    res, _ = _result(out, "perm", "shapes-zeroshot-seg")
    assert res["metrics"] == {"mIoU": 0.0, "mAcc": 0.0, "aAcc": 0.0}
    r = _run(runner, cli, [*common, "--model", f"py:{ORACLES}:seg_oracle_permuted", "--model-name", "perm21",
                           "-o", str(out), "--param", "reduce_zero_label=false", "--param", "background=prompt",
                           "--param", "protocol=standard"])
    assert r.exit_code == 0, r.output
    res, _ = _result(out, "perm21", "shapes-zeroshot-seg")
    # background is predicted exactly, every shape pixel as another kind: IoU 1 for background, 0 otherwise
    assert res["metrics"]["mIoU"] == pytest.approx(100 / (1 + len(present)))
    assert res["metrics"]["aAcc"] == pytest.approx(100 * background / valid)


def test_cli_modes_with_a_real_model_and_records_reaggregate(runner, cli, small_world, tmp_path):
    voc = f"root={small_world}/VOCdevkit/VOC2012"
    out = tmp_path / "out"
    runs = {
        "whole": ["--param", "upsample=bilinear"],
        "slide": ["--param", "mode=slide", "--param", "upsample=bilinear", "--param", "short_side=80",
                  "--param", "stride=24", "--param", "protocol=standard"],
        "threshold": ["--param", "reduce_zero_label=false", "--param", "background=threshold",
                      "--param", "background_threshold=0.2", "--param", "protocol=standard",
                      "--param", "candidates=present"],
    }
    for name, extra in runs.items():
        r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "--model-name", name,
                               "--param", voc, "--dense", "maskclip", "-o", str(out), *extra])
        assert r.exit_code == 0, r.output
        res, samples = _result(out, name, "shapes-zeroshot-seg")
        again = ClusterSums(samples, res["aggregations"]).compute()
        for k, v in res["metrics"].items():
            assert again[k][0] == pytest.approx(v), (name, k)
            lo, hi = res["intervals"][k]
            assert lo <= v <= hi
        assert res["details"]["inference"]["dense_path"] == "maskclip"
        assert 0 <= res["metrics"]["mIoU"] <= 100
    assert res["details"]["background"] == {"index": 0, "mode": "threshold", "threshold": 0.2}
    slide, _ = _result(out, "slide", "shapes-zeroshot-seg")
    assert slide["details"]["inference"]["stride"] == 24 and slide["details"]["inference"]["short_side"] == 80


def test_slide_pipeline_equals_independent_recomputation(small_world):
    from mmseg.models.segmentors import EncoderDecoder
    from test_segmentation_metrics import _FakeSegmentor

    from sparc_eval.engine import Engine
    from sparc_eval.task_types import EvalContext
    from sparc_eval.task_types.zeroshot_segmentation import ZeroShotSegmentation
    from sparc_eval.tasks import load_task

    cfg = load_task("shapes-zeroshot-seg", overrides={
        "root": f"{small_world}/VOCdevkit/VOC2012", "mode": "slide", "upsample": "bilinear", "short_side": 88,
        "stride": 20, "protocol": "standard"})
    task = ZeroShotSegmentation(cfg)
    model = load_model(TINY_OPEN_CLIP, device="cpu", dense="maskclip")
    ctx = EvalContext(engine=Engine(model, cache=None, batch_size=3, progress=False), progress=False)
    data = task.load_data(4)
    pre = dict(model.preprocessing)
    p = task._check(data, pre)
    text, _ = task._text(ctx, data, p)
    preds = {}
    task._slide(ctx, data, p, pre, text, lambda i, pred, label: preds.setdefault(i, pred))

    def crop_scores(crop_img):
        pe = model.encode_image_patches(crop_img)
        s = F.normalize(pe.embeddings, dim=-1) @ text.T
        s = s.reshape(crop_img.shape[0], *pe.grid, -1).permute(0, 3, 1, 2)
        return F.interpolate(s, size=crop_img.shape[-2:], mode="bilinear", align_corners=False)

    seg = _FakeSegmentor(64, 20, crop_scores, data.num_classes)
    for i in range(4):
        with Image.open(data.images.paths[i]) as im:
            img = im.convert("RGB").resize((88, 88), Image.BICUBIC)
        x = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - torch.tensor(pre["mean"])[:, None, None])
        x = x / torch.tensor(pre["std"])[:, None, None]
        logits = EncoderDecoder.slide_inference(seg, x[None], [{}])
        logits = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)[0]
        assert torch.equal(preds[i], logits.argmax(dim=0))


def test_bad_inputs_through_the_cli(runner, cli, small_world, tmp_path):
    voc = small_world / "VOCdevkit/VOC2012"
    r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "o"),
                           "--param", f"root={voc}", "--param", "reduce_zero_label=false"])
    assert r.exit_code == 2 and "scores a background class" in r.output
    r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "o"),
                           "--param", f"root={voc}", "--param", "mode=slide"])
    assert r.exit_code == 2 and "patch-argmax is defined for mode: whole only" in r.output
    broken = tmp_path / "VOC2012"
    shutil.copytree(voc, broken)
    stem = (broken / "ImageSets/Segmentation/val.txt").read_text().split()[0]
    lab = broken / "SegmentationClass" / f"{stem}.png"
    with Image.open(lab) as im:
        im.resize((32, 32)).save(lab)
    r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "o"),
                           "--param", f"root={broken}", "--limit", "3"])
    assert r.exit_code == 2 and f"{stem}.png: label map is 32x32" in r.output
    r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "o"),
                           "--param", f"root={voc}", "--param", "class_table=voc"])
    assert r.exit_code == 0  # 20 VOC names over 6-kind masks: ids stay in range
    r = _run(runner, cli, ["--task", "shapes-zeroshot-seg", "--model", TINY_OPEN_CLIP, "-o", str(tmp_path / "o"),
                           "--param", f"root={voc}", "--param", f"class_table={tmp_path / 'none.tsv'}"])
    assert r.exit_code == 2 and "none.tsv': no such file" in r.output
