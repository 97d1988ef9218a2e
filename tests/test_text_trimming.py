"""Texts at their real length: exact padding trimming where the tower allows it, never elsewhere;
length-sorted batches scattered back in order; identical texts encoded once; the CPU budget.

Every tower kind we ship or load is compared with its untrimmed path (``trim_text: false``, the stock
forward at the full context) in fp32: open_clip causal (``CLIP`` and ``CustomTextCLIP``), CoCa-style
(appended [CLS]), MobileCLIP-style (bidirectional, argmax) and SigLIP-style (bidirectional, last-token)
towers, Hugging Face CLIP and SigLIP, and ``sparc:`` dual encoders (causal, and bidirectional with the
padding masked out, which open_clip's configs cannot express).
"""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_OPEN_CLIP

from sparc_eval.engine import EmbeddingCache, Engine
from sparc_eval.engine.extract import available_cores
from sparc_eval.models import load_model
from sparc_eval.models.base import ModelIdentity
from sparc_eval.models.text_batching import encode_cut, open_clip_text_tower

TEXTS = ["a red circle", "two blue squares to the left of a large green star in the top right corner",
         "a star", "a red circle", "three shapes: " + "a small purple triangle, " * 12 + "and a cross",
         "a yellow diamond below a black cross", "a star", "one large orange square in the middle"]
TOWERS = {  # text_cfg of a tiny open_clip model -> whether trimming is exact
    "causal": ({}, True),
    "custom-causal": ({"custom_text": True}, True),
    "coca": ({"coca": True}, False),
    "bidirectional-argmax": ({"text_cfg": {"no_causal_mask": True}}, False),
    "bidirectional-last": ({"custom_text": True, "text_cfg": {"no_causal_mask": True, "pool_type": "last"}}, False),
}


@pytest.fixture(scope="module")
def arch_of(tmp_path_factory):
    """open_clip architecture name of each tiny tower kind (configs registered with open_clip)."""
    from sparc_eval.models.open_clip_adapter import open_clip_module

    folder = tmp_path_factory.mktemp("open_clip-configs")
    vision = {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32}
    text = {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
    names = {}
    for kind, (cfg, _) in TOWERS.items():
        name = f"Test-Trim-{kind}"
        body = {"embed_dim": 32, "vision_cfg": dict(vision), "text_cfg": {**text, **cfg.get("text_cfg", {})}}
        if cfg.get("custom_text"):
            body["custom_text"] = True
        if cfg.get("coca"):
            body["vision_cfg"].update(attentional_pool=True, attn_pooler_heads=2, output_tokens=True)
            body["text_cfg"].update(embed_cls=True, output_tokens=True)
            body["multimodal_cfg"] = {**text, "layers": 1, "attn_pooler_heads": 2}
            body["custom_text"] = True
        (folder / f"{name}.json").write_text(json.dumps(body))
        names[kind] = name
    open_clip_module().add_model_config(folder)
    return names


def _lengths_seen(module):
    """Sequence lengths a torch module is run on (a forward pre-hook), and the hook handle."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape[1]), with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("kind", list(TOWERS))
def test_open_clip_towers_trim_exactly_where_exact(arch_of, kind):
    exact = TOWERS[kind][1]
    spec = f"open_clip:{arch_of[kind]}"
    trimmed = load_model(spec)
    full = load_model(spec, preprocessing={"trim_text": False})
    assert trimmed.preprocessing["trim_text"] is exact
    assert trimmed.preprocessing["text_padding"] == ("longest" if exact else "max_length")
    assert full.preprocessing["trim_text"] is False and "turned off" in full.preprocessing["text_padding_reason"]
    ids = trimmed.tokenizer(TEXTS)
    with torch.no_grad():
        stock = torch.nn.functional.normalize(full.model.encode_text(ids), dim=-1)
    assert torch.allclose(full.encode_texts(TEXTS), stock, atol=1e-6)  # the untrimmed path is open_clip's own

    seen, handle = _lengths_seen(trimmed.text_tower.transformer)
    try:
        out = trimmed.encode_texts(TEXTS[:4])
    finally:
        handle.remove()
    longest = int((ids[:4] != 0).sum(1).max())
    if exact:
        assert seen == [longest] and longest < ids.shape[1]
        assert (out - stock[:4]).abs().max() < 1e-5
    else:  # the stock forward at the full context (CoCa's [CLS] is appended after the padding)
        assert seen == [ids.shape[1] + (1 if kind == "coca" else 0)]
        assert (out - stock[:4]).abs().max() < 1e-6


def test_trimmed_path_runs_under_autocast(arch_of):
    """The code path CUDA takes with --precision bf16/fp16, here with CPU bfloat16 autocast."""
    spec = f"open_clip:{arch_of['causal']}"
    trimmed = load_model(spec, precision="bf16")
    full = load_model(spec, precision="bf16", preprocessing={"trim_text": False})
    exact = load_model(spec)
    a, b, c = trimmed.encode_texts(TEXTS), full.encode_texts(TEXTS), exact.encode_texts(TEXTS)
    assert a.dtype == torch.float32 and (a * b).sum(-1).min() > 0.999 and (a * c).sum(-1).min() > 0.999


def test_trimming_a_tower_that_attends_to_its_padding_would_change_it(arch_of):
    """Why the bidirectional towers keep their padding: a forced cut changes their embeddings."""
    model = load_model(f"open_clip:{arch_of['bidirectional-argmax']}")
    texts = TEXTS[:4]  # none reaches the context, so the forced cut is shorter than it
    ids = model.tokenizer(texts)
    with torch.no_grad():
        forced = torch.nn.functional.normalize(encode_cut(open_clip_text_tower(model.model), ids), dim=-1)
    assert (forced - model.encode_texts(texts)).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["causal", "custom-causal"])
def test_open_clip_token_outputs_trimmed_and_padded_back(arch_of, kind):
    spec = f"open_clip:{arch_of[kind]}"
    trimmed, full = load_model(spec), load_model(spec, preprocessing={"trim_text": False})
    tokens, mask = trimmed.encode_text_tokens(TEXTS)
    ref, ref_mask = full.encode_text_tokens(TEXTS)
    assert tokens.shape == ref.shape and tokens.shape[1] == 32 and torch.equal(mask, ref_mask)
    assert (tokens - ref)[mask].abs().max() < 1e-5
    assert not tokens[~mask].any() and not ref[~mask].any()  # padding positions are zero in both paths


def test_wrapped_open_clip_module_trims_exactly_unless_it_overrides_encode_text():
    """The in-training path (``api.evaluate`` of an ``nn.Module``): a stock open_clip model trims exactly;
    a subclass with its own ``encode_text`` is run as it is."""
    from sparc_eval.models.open_clip_adapter import open_clip_module
    from sparc_eval.models.python_adapter import wrap_module

    open_clip = open_clip_module()
    torch.manual_seed(0)
    module, tok = open_clip.create_model("ViT-Tiny-8-64"), open_clip.get_tokenizer("ViT-Tiny-8-64")
    identity = ModelIdentity("module:test", None, "test", "0")
    adapter = wrap_module(module, lambda img: img, tok, identity=identity, device=torch.device("cpu"), precision="fp32")
    assert adapter.preprocessing["trim_text"] is True
    with torch.no_grad():
        stock = torch.nn.functional.normalize(module.encode_text(tok(TEXTS)), dim=-1)
    assert (adapter.encode_texts(TEXTS) - stock).abs().max() < 1e-5

    class Custom(type(module)):
        def encode_text(self, text, normalize=False):
            return super().encode_text(text, normalize) * 2

    module.__class__ = Custom
    custom = wrap_module(module, lambda img: img, tok, identity=identity, device=torch.device("cpu"), precision="fp32")
    assert custom.trim is None and "trim_text" not in custom.preprocessing
    assert (custom.encode_texts(TEXTS) - stock).abs().max() < 1e-6


def test_coca_token_outputs_are_unsupported_not_wrong(arch_of):
    model = load_model(f"open_clip:{arch_of['coca']}")
    assert not model.supports("text_tokens")


def test_engine_sorts_trims_and_scatters_back_in_input_order(arch_of):
    spec = f"open_clip:{arch_of['causal']}"
    trimmed, full = load_model(spec), load_model(spec, preprocessing={"trim_text": False})
    reference = full.encode_texts(TEXTS)  # one batch, input order, full context
    seen, handle = _lengths_seen(trimmed.text_tower.transformer)
    engine = Engine(trimmed, cache=None, batch_size=2, progress=False)
    try:
        emb = engine.text_embeddings(TEXTS)
    finally:
        handle.remove()
    assert emb.shape == reference.shape and (emb - reference).abs().max() < 1e-5
    assert seen == sorted(seen, reverse=True) and len(seen) == 3  # 6 distinct texts, longest batch first
    assert seen[0] == 32 and seen[-1] < 8  # the truncated text runs at the full context, short ones short
    assert engine.stats.texts_encoded == 6 and engine.stats.texts_duplicate == 2


def test_identical_texts_are_encoded_once_and_served_from_the_cache(tmp_path):
    model = load_model(TINY_OPEN_CLIP)
    cache = EmbeddingCache(tmp_path)
    engine = Engine(model, cache=cache, batch_size=3, progress=False)
    emb = engine.text_embeddings(TEXTS)
    assert engine.stats.texts_encoded == 6 and engine.stats.forward_batches == 2
    assert torch.equal(emb[0], emb[3]) and torch.equal(emb[2], emb[6])
    assert engine.count_truncated(TEXTS) == 1
    again = Engine(model, cache=cache, batch_size=3, progress=False)
    source = again.text_source(TEXTS)
    assert again.stats.texts_cached == 6 and again.stats.texts_encoded == 0
    assert source.n == len(TEXTS) and torch.equal(source.read(0, len(TEXTS)), emb)
    assert torch.equal(source.read(2, 7), emb[2:7])
    distinct = Engine(model, cache=cache, batch_size=3, progress=False)
    assert torch.equal(distinct.text_embeddings(list(dict.fromkeys(TEXTS))), emb[[0, 1, 2, 4, 5, 7]])
    assert distinct.stats.texts_cached == 6  # the same entry: keyed by the distinct texts
    assert distinct.count_truncated(TEXTS + TEXTS[4:5]) == 2  # repeats of a cut text count


def test_hf_clip_pads_to_the_longest_text_exactly_and_siglip_keeps_its_padding(hf_clip_dir, hf_siglip_dir):
    clip, clip_full = load_model(f"hf:{hf_clip_dir}"), load_model(f"hf:{hf_clip_dir}", preprocessing={"trim_text": False})
    assert clip.preprocessing["text_padding"] == "longest" and clip_full.preprocessing["text_padding"] == "max_length"
    assert (clip.encode_texts(TEXTS) - clip_full.encode_texts(TEXTS)).abs().max() < 1e-5
    ref = clip_full.encode_texts(TEXTS)
    assert (Engine(clip, cache=None, batch_size=2, progress=False).text_embeddings(TEXTS) - ref).abs().max() < 1e-5
    tokens, mask = clip.encode_text_tokens(TEXTS[:3])
    ref_tokens, ref_mask = clip_full.encode_text_tokens(TEXTS[:3])
    assert tokens.shape == ref_tokens.shape == (3, 32, 32) and torch.equal(mask, ref_mask)
    assert (tokens - ref_tokens)[mask].abs().max() < 1e-5

    siglip = load_model(f"hf:{hf_siglip_dir}")
    assert siglip.preprocessing["trim_text"] is False and siglip.preprocessing["text_padding"] == "max_length"
    enc = siglip._tokenize(TEXTS[:2])
    assert enc["input_ids"].shape[1] == siglip.context_length  # trained padding kept


@pytest.mark.parametrize("text_cfg", [{}, {"no_causal_mask": True}], ids=["causal", "pad-masked"])
def test_sparc_towers_trim_exactly(text_cfg):
    from sparc_eval.models.sparc_adapter import wrap
    from sparc_eval.pretrain.model import DualEncoder, ModelConfig, build_tokenizer, default_preprocessing

    torch.manual_seed(0)
    cfg = ModelConfig(arch="ViT-Tiny-8-64", text_cfg=text_cfg)
    model = DualEncoder(cfg).eval()
    identity = ModelIdentity("sparc:test", None, "test", "0")
    pre = default_preprocessing(cfg)
    trimmed = wrap(model, build_tokenizer(cfg), pre, identity, torch.device("cpu"))
    full = wrap(model, build_tokenizer(cfg), {**pre, "trim_text": False}, identity, torch.device("cpu"))
    assert trimmed.preprocessing["trim_text"] is True and "trim_text" not in pre  # the caller's dict is not changed
    ids = trimmed.tokenizer(TEXTS)
    with torch.no_grad():
        stock = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    assert torch.allclose(full.encode_texts(TEXTS), stock, atol=1e-6)
    seen, handle = _lengths_seen(model.text.transformer)
    try:
        emb = Engine(trimmed, cache=None, batch_size=3, progress=False).text_embeddings(TEXTS)
    finally:
        handle.remove()
    assert (emb - stock).abs().max() < 1e-5 and max(seen) == 32 and min(seen) < 10
    tokens, mask = trimmed.encode_text_tokens(TEXTS)
    ref, ref_mask = full.encode_text_tokens(TEXTS)
    assert tokens.shape == ref.shape and torch.equal(mask, ref_mask) and (tokens - ref)[mask].abs().max() < 1e-5


def test_trim_text_override_is_recorded_and_changes_no_metric(small_world, tmp_path, runner, cli):
    out = {}
    for trim in (True, False):
        folder = tmp_path / str(trim)
        args = ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param", f"root={small_world}",
                "-o", str(folder), "--no-cache", "-q", *([] if trim else ["--no-trim-text"])]
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        out[trim] = json.loads(next(folder.rglob("shapes-retrieval.json")).read_text())
    assert out[True]["preprocessing"]["trim_text"] is True and out[False]["preprocessing"]["trim_text"] is False
    assert out[True]["metrics"] == out[False]["metrics"]
    with pytest.raises(Exception, match="trim_text"):
        load_model(TINY_OPEN_CLIP, preprocessing={"trim_text": "sometimes"})


def test_workers_and_threads_stay_within_the_cores(small_world, monkeypatch):
    """On CPU images are decoded by threads between forward passes: no worker processes, and the forward
    runs on one torch thread per core; both are overridable, and torch's setting is restored."""
    from sparc_eval.data.base import get_reader

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    images = get_reader("karpathy").load({"root": str(small_world), "annotations": "dataset_shapes.json",
                                          "split": "test", "image_dir": ""}).images
    model = load_model(TINY_OPEN_CLIP)
    reference = Engine(model, cache=None, batch_size=8, progress=False, num_workers=0, threads=1).image_embeddings(images)
    inside = []
    model._encode_images = (lambda f: lambda x: inside.append(torch.get_num_threads()) or f(x))(model._encode_images)
    before = torch.get_num_threads()
    engine = Engine(model, cache=None, batch_size=8, progress=False)
    assert engine._workers(len(images)) == 0 and engine._threads(0) == available_cores()
    assert torch.equal(engine.image_embeddings(images), reference)  # threaded decoding changes no pixel
    assert set(inside) == {available_cores()} and torch.get_num_threads() == before
    inside.clear()
    Engine(model, cache=None, batch_size=8, progress=False, num_workers=1, threads=1).image_embeddings(images)
    assert set(inside) == {1} and torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's setting for several ranks per machine is kept
    assert engine._threads(0) is None
