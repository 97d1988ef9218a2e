"""The pretraining losses against independent, loop-based implementations of their definitions (float64,
values and gradients, with padding), plus hand-computed cases and numerical edge cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparc_eval.errors import ConfigError, UnknownNameError
from sparc_eval.pretrain import losses as L
from sparc_eval.pretrain.model import EncoderOutputs

DT = torch.float64


def _inputs(seed=0, B=4, Lt=6, P=5, D=8, empty_caption=True):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randn(B, Lt, D, generator=g, dtype=DT, requires_grad=True)
    patch = torch.randn(B, P, D, generator=g, dtype=DT, requires_grad=True)
    img = torch.randn(B, D, generator=g, dtype=DT, requires_grad=True)
    txt = torch.randn(B, D, generator=g, dtype=DT, requires_grad=True)
    scale = torch.tensor(7.0, dtype=DT, requires_grad=True)
    lengths = [Lt, 3, 1, 4][:B]
    if empty_caption:
        lengths[2] = 0
    mask = torch.zeros(B, Lt, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return tok, patch, img, txt, scale, mask


def _grads(value, inputs):
    return torch.autograd.grad(value, inputs, allow_unused=True)


def _assert_same(ours, ref, inputs):
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(ours, inputs), _grads(ref, inputs)):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def _unit(x):
    return x / torch.sqrt((x * x).sum())


def _logsumexp(values):
    m = max(v.detach() for v in values)
    return m + torch.log(sum(torch.exp(v - m) for v in values))


# -- references, one sample / pair at a time ----------------------------------------------------------
def ref_clip(img, txt, scale):
    B = img.shape[0]
    i = [_unit(img[k]) for k in range(B)]
    t = [_unit(txt[k]) for k in range(B)]
    total = 0
    for a in range(B):
        total = total + _logsumexp([scale * (i[a] @ t[b]) for b in range(B)]) - scale * (i[a] @ t[a])
        total = total + _logsumexp([scale * (t[a] @ i[b]) for b in range(B)]) - scale * (t[a] @ i[a])
    return total / (2 * B)


def ref_grouped(tok_b, patch_b, l, alignment="sparse"):
    """c_l (Eqs. 2-5) for token l of one sample, patch by patch."""
    P = patch_b.shape[0]
    s = [tok_b[l] @ patch_b[p] for p in range(P)]
    if alignment == "softmax":
        m = _logsumexp(s)
        a = [torch.exp(x - m) for x in s]
    else:
        lo, hi = min(s), max(s)
        shat = [(x - lo) / (hi - lo) if hi > lo else torch.ones((), dtype=DT) for x in s]
        a = [x if (alignment == "dense" or x >= 1.0 / P) else 0 * x for x in shat]
        tot = sum(a)
        a = [x / tot for x in a]
    return _unit(sum(a[p] * patch_b[p] for p in range(P)))


def ref_sparc_local(tok, patch, mask, scale, reduction="tokens", alignment="sparse"):
    B = tok.shape[0]
    per_caption, total, count = [], 0, 0
    for b in range(B):
        valid = [l for l in range(tok.shape[1]) if mask[b, l]]
        c = {l: ref_grouped(tok[b], patch[b], l, alignment) for l in valid}
        t = {l: _unit(tok[b, l]) for l in valid}
        cap = 0
        for l in valid:
            v2l = _logsumexp([scale * (c[l] @ t[k]) for k in valid]) - scale * (c[l] @ t[l])
            l2v = _logsumexp([scale * (t[l] @ c[k]) for k in valid]) - scale * (t[l] @ c[l])
            cap = cap + 0.5 * (v2l + l2v)
        total = total + cap
        count += len(valid)
        per_caption.append(cap / len(valid) if valid else cap)
    if reduction == "tokens":
        return total / count
    return sum(per_caption) / B  # Eq. 6: 1/B over captions of 1/L_i over tokens


# -- SPARC ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["tokens", "captions"])
def test_sparc_local_loss_equals_loop_reference(reduction):
    tok, patch, _, _, scale, mask = _inputs()
    ours = L.sparc_local_loss(tok, patch, mask, scale, reduction=reduction)
    ref = ref_sparc_local(tok, patch, mask, scale, reduction=reduction)
    _assert_same(ours, ref, (tok, patch, scale))


def test_token_and_caption_means_differ_when_lengths_differ():
    tok, patch, _, _, scale, mask = _inputs(seed=3)
    a = L.sparc_local_loss(tok, patch, mask, scale, reduction="tokens")
    b = L.sparc_local_loss(tok, patch, mask, scale, reduction="captions")
    assert abs(a.item() - b.item()) > 1e-3


@pytest.mark.parametrize("alignment", ["dense", "softmax"])
def test_sparc_ablations_equal_loop_reference(alignment):
    tok, patch, _, _, scale, mask = _inputs(seed=1)
    ours = L.sparc_local_loss(tok, patch, mask, scale, alignment=alignment)
    _assert_same(ours, ref_sparc_local(tok, patch, mask, scale, alignment=alignment), (tok, patch, scale))


def test_alignment_weights_hand_computed():
    # one token, P = 4 patches along the axes: similarities (3, 1, 0.2, 0) -> min-max (1, 1/3, 1/15, 0)
    tok = torch.tensor([[[1.0, 0.0]]], dtype=DT)
    patch = torch.tensor([[[3.0, 0.0], [1.0, 0.0], [0.2, 0.0], [0.0, 5.0]]], dtype=DT)
    a = L.sparc_alignment_weights(tok, patch)  # threshold 1/4 drops 1/15 and 0
    torch.testing.assert_close(a, torch.tensor([[[0.75, 0.25, 0.0, 0.0]]], dtype=DT))
    dense = L.sparc_alignment_weights(tok, patch, alignment="dense")
    torch.testing.assert_close(dense, torch.tensor([[[15, 5, 1, 0]]], dtype=DT) / 21)
    loose = L.sparc_alignment_weights(tok, patch, threshold=0.05)
    torch.testing.assert_close(loose, dense)


def test_constant_rows_padding_and_low_precision_are_safe():
    tok, patch, _, _, scale, mask = _inputs(seed=2)
    with torch.no_grad():
        patch[1] = patch[1, :1].expand_as(patch[1])  # identical patches: every similarity row is constant
    ours = L.sparc_local_loss(tok, patch, mask, scale)
    _assert_same(ours, ref_sparc_local(tok, patch, mask, scale), (tok, patch, scale))
    weights = L.sparc_alignment_weights(tok.detach(), patch.detach())
    torch.testing.assert_close(weights[1], torch.full_like(weights[1], 1 / patch.shape[1]))  # uniform
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    # every caption padded: zero loss and zero gradient, no NaN
    none = L.sparc_local_loss(tok, patch, torch.zeros_like(mask), scale)
    assert none.item() == 0 and all(torch.count_nonzero(g) == 0 for g in _grads(none, (tok, patch)))
    # bf16 / fp16 inputs: computed in float32, close to the float64 value
    for dt in (torch.bfloat16, torch.float16):
        low = L.sparc_local_loss(tok.detach().to(dt), patch.detach().to(dt), mask, scale.detach().float())
        assert low.dtype == torch.float32 and math.isclose(low.item(), ours.item(), rel_tol=0.05)
    # the eps variant stays finite on constant rows
    assert torch.isfinite(L.sparc_local_loss(tok, patch, mask, scale, eps=1e-6))


def test_sparc_module_combines_global_and_local():
    tok, patch, img, txt, scale, mask = _inputs()
    out = EncoderOutputs(img, txt, patch, tok, mask, scale, scale)
    terms = L.build_loss("sparc", {"global_weight": 0.5, "local_weight": 2.0})(out)
    g, loc = L.clip_loss(img, txt, scale), L.sparc_local_loss(tok, patch, mask, scale)
    torch.testing.assert_close(terms["global"], g)
    torch.testing.assert_close(terms["local"], loc)
    torch.testing.assert_close(terms["loss"], 0.5 * g + 2.0 * loc)


def test_clip_loss_equals_loop_reference():
    _, _, img, txt, scale, _ = _inputs()
    _assert_same(L.clip_loss(img, txt, scale), ref_clip(img, txt, scale), (img, txt, scale))


# -- baselines ----------------------------------------------------------------------------------------------
def ref_filip(patch, tok, mask, scale):
    B = patch.shape[0]
    i2t = [[None] * B for _ in range(B)]
    t2i = [[None] * B for _ in range(B)]
    for i in range(B):
        v = [_unit(patch[i, p]) for p in range(patch.shape[1])]
        for j in range(B):
            t = [_unit(tok[j, l]) for l in range(tok.shape[1]) if mask[j, l]]
            i2t[i][j] = sum(max(vp @ tl for tl in t) for vp in v) / len(v)
            t2i[i][j] = sum(max(vp @ tl for vp in v) for tl in t) / len(t)
    total = 0
    for a in range(B):
        total = total + _logsumexp([scale * i2t[a][b] for b in range(B)]) - scale * i2t[a][a]
        total = total + _logsumexp([scale * t2i[b][a] for b in range(B)]) - scale * t2i[a][a]
    return total / (2 * B)


def test_filip_equals_loop_reference_and_drops_tokens():
    tok, patch, _, _, scale, mask = _inputs(empty_caption=False)
    _assert_same(L.filip_loss(patch, tok, mask, scale), ref_filip(patch, tok, mask, scale), (tok, patch, scale))
    _assert_same(L.filip_loss(patch, tok, mask, scale, chunk_size=3), ref_filip(patch, tok, mask, scale),
                 (tok, patch, scale))
    p = torch.randn(3, 10, 4, dtype=DT)
    kept = L.drop_patches(p, 0.2, torch.Generator().manual_seed(0))
    assert kept.shape == (3, 8, 4)
    for b in range(3):  # a subset of the image's own patches, in order
        idx = [next(k for k in range(10) if torch.equal(p[b, k], row)) for row in kept[b]]
        assert idx == sorted(set(idx))
    dropped = L.filip_loss(patch, tok, mask, scale, token_drop=0.2, generator=torch.Generator().manual_seed(5))
    same = L.drop_patches(patch, 0.2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(dropped, ref_filip(same, tok, mask, scale))


def ref_pacl(patch, txt, scale, attention_scale=10.0):
    B, P = patch.shape[:2]
    compat = [[None] * B for _ in range(B)]
    for i in range(B):
        for j in range(B):
            t = _unit(txt[j])
            w = [attention_scale * (_unit(patch[i, p]) @ t) for p in range(P)]
            m = _logsumexp(w)
            w = [torch.exp(x - m) for x in w]
            compat[i][j] = _unit(sum(w[p] * patch[i, p] for p in range(P))) @ t
    total = 0
    for a in range(B):
        total = total + _logsumexp([scale * compat[a][b] for b in range(B)]) - scale * compat[a][a]
        total = total + _logsumexp([scale * compat[b][a] for b in range(B)]) - scale * compat[a][a]
    return total / (2 * B)


def test_pacl_equals_loop_reference():
    _, patch, _, txt, scale, _ = _inputs()
    _assert_same(L.pacl_loss(patch, txt, scale), ref_pacl(patch, txt, scale), (patch, txt, scale))


def ref_gloria(patch, tok, mask, scale, temp1=4.0, temp2=5.0):
    """As marshuang80/gloria ``local_loss``/``attention_fn`` (softmax over words, then temp1 and softmax over
    regions), with the words of each caption cut to its length and scores divided by sqrt(D)."""
    B, _P, D = patch.shape
    S = [[None] * B for _ in range(B)]
    for j in range(B):
        words = tok[j][mask[j]]  # [n, D]
        for i in range(B):
            attn = (patch[i] @ words.t()) / math.sqrt(D)  # [P, n]
            attn = torch.softmax(attn, dim=-1).t() * temp1  # over words, then [n, P]
            attn = torch.softmax(attn, dim=-1)
            ctx = attn @ patch[i]  # [n, D]
            r = (words * ctx).sum(-1) / (words.norm(dim=-1) * ctx.norm(dim=-1))
            S[i][j] = torch.log(torch.exp(temp2 * r).sum())
    total = 0
    for a in range(B):
        total = total + _logsumexp([scale * S[a][b] for b in range(B)]) - scale * S[a][a]
        total = total + _logsumexp([scale * S[b][a] for b in range(B)]) - scale * S[a][a]
    return total / (2 * B)


def test_gloria_equals_loop_reference():
    tok, patch, _, _, scale, mask = _inputs(empty_caption=False)
    _assert_same(L.gloria_local_loss(patch, tok, mask, scale), ref_gloria(patch, tok, mask, scale),
                 (tok, patch, scale))
    _assert_same(L.gloria_local_loss(patch, tok, mask, scale, chunk_size=1), ref_gloria(patch, tok, mask, scale),
                 (tok, patch, scale))


def ref_mgca_token(tok, patch, mask, scale, temp=0.1):
    def both_ways(q, k):  # within-sample InfoNCE, rows and columns, mean over rows
        sim = scale * q @ k.t()
        n = sim.shape[0]
        rows = sum(_logsumexp(list(sim[a])) - sim[a, a] for a in range(n)) / n
        cols = sum(_logsumexp(list(sim[:, a])) - sim[a, a] for a in range(n)) / n
        return 0.5 * (rows + cols)

    total = 0
    B = tok.shape[0]
    for b in range(B):
        w = F.normalize(tok[b][mask[b]], dim=-1)
        v = F.normalize(patch[b], dim=-1)
        word_ctx = F.normalize(torch.softmax(w @ v.t() / temp, dim=-1) @ v, dim=-1)
        patch_ctx = F.normalize(torch.softmax(v @ w.t() / temp, dim=-1) @ w, dim=-1)
        total = total + both_ways(w, word_ctx) + both_ways(v, patch_ctx)
    return total / B


def test_mgca_token_loss_equals_loop_reference():
    tok, patch, _, _, scale, mask = _inputs(empty_caption=False)
    _assert_same(L.mgca_token_loss(tok, patch, mask, scale), ref_mgca_token(tok, patch, mask, scale),
                 (tok, patch, scale))


def ref_sinkhorn(Q, iters):  # HKU-MedAI/MGCA ``MGCA.sinkhorn``
    Q = Q.clone()
    Q /= torch.sum(Q)
    K, B = Q.shape
    r, c = torch.ones(K, dtype=Q.dtype) / K, torch.ones(B, dtype=Q.dtype) / B
    for _ in range(iters):
        u = torch.sum(Q, dim=1)
        Q *= (r / u).unsqueeze(1)
        Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
    return (Q / torch.sum(Q, dim=0, keepdim=True)).t()


def test_mgca_prototype_loss_equals_reference():
    _, _, img, txt, _, _ = _inputs()
    protos = F.normalize(torch.randn(7, img.shape[1], dtype=DT, generator=torch.Generator().manual_seed(9)), dim=1)
    protos.requires_grad_(True)
    io, to = F.normalize(img, dim=-1) @ protos.t(), F.normalize(txt, dim=-1) @ protos.t()
    with torch.no_grad():
        ic, tc = ref_sinkhorn(torch.exp(io / 0.05).t(), 3), ref_sinkhorn(torch.exp(to / 0.05).t(), 3)
    ref = 0.5 * (-torch.mean(torch.sum(ic * torch.log(F.softmax(to / 0.2, dim=1)), dim=1))
                 - torch.mean(torch.sum(tc * torch.log(F.softmax(io / 0.2, dim=1)), dim=1)))
    _assert_same(L.mgca_prototype_loss(img, txt, protos), ref, (img, txt, protos))


def test_baseline_modules_sum_their_terms():
    tok, patch, img, txt, scale, mask = _inputs(empty_caption=False)
    out = EncoderOutputs(img, txt, patch, tok, mask, scale, scale)
    g = L.clip_loss(img, txt, scale)
    gloria = L.build_loss("gloria", {"local_weight": 0.5})(out)
    torch.testing.assert_close(gloria["loss"], g + 0.5 * L.gloria_local_loss(patch, tok, mask, scale))
    mgca = L.build_loss("mgca", {"num_prototypes": 0}, embed_dim=8).to(DT)(out)
    torch.testing.assert_close(mgca["loss"], g + L.mgca_token_loss(tok, patch, mask, scale))
    with_protos = L.build_loss("mgca", {"num_prototypes": 5}, embed_dim=8).to(DT)(out)
    assert set(with_protos) == {"loss", "global", "local", "prototype"}
    filip = L.build_loss("filip", {"global_weight": 1.0, "token_drop": 0.0})(out)
    torch.testing.assert_close(filip["loss"], g + L.filip_loss(patch, tok, mask, scale))
    pacl = L.build_loss("pacl", {}, embed_dim=8).to(DT)
    torch.testing.assert_close(pacl(out)["loss"], L.pacl_loss(patch + pacl.patch_mlp(patch), txt, scale))
    torch.testing.assert_close(L.build_loss("clip")(out)["loss"], g)


def test_loss_config_errors_are_clear():
    with pytest.raises(UnknownNameError, match="Unknown loss 'sprac'.*Did you mean: sparc"):
        L.build_loss("sprac")
    with pytest.raises(ConfigError, match="unknown option.*lokal_weight.*expected some of.*local_weight"):
        L.build_loss("sparc", {"lokal_weight": 1})
    with pytest.raises(ConfigError, match="loss.alignment: 'hard'; expected sparse or dense or softmax"):
        L.build_loss("sparc", {"alignment": "hard"})


def test_modules_ask_for_the_outputs_they_use():
    """The trainer computes only the encoder outputs a loss reads, and tells DDP exactly when some parameters
    get no gradient; checked on the tiny dual encoder's actual gradients."""
    from sparc_eval.pretrain.model import DualEncoder, ModelConfig
    from sparc_eval.pretrain.train import TrainModule, may_skip_parameters

    cfg = ModelConfig(arch="ViT-Tiny-8-64", embed_dim=16, h_v=True, local_temperature="separate",
                      vision_cfg={"layers": 1, "width": 32, "head_width": 16},
                      text_cfg={"layers": 1, "width": 32, "heads": 2, "context_length": 8})
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[1, 5, 9, 2, 0, 0, 0, 0], [1, 7, 2, 0, 0, 0, 0, 0], [1, 4, 4, 6, 2, 0, 0, 0]])
    cases = [("pacl", {}, True, (False, True, True)), ("pacl", {"global_weight": 1.0}, True, (True, True, True)),
             ("sparc", {"global_weight": 0.0}, True, (False, False, True)),
             ("sparc", {"global_weight": 0.0}, False, (False, False, True)),  # only the global temperature idle
             ("sparc", {}, True, (True, True, True)), ("clip", {}, True, (True, True, False)),
             ("filip", {}, True, (False, False, True))]
    for name, params, h_v, needs in cases:
        torch.manual_seed(0)
        enc = DualEncoder(ModelConfig(**{**cfg.as_dict(), "h_v": h_v}))
        loss = L.build_loss(name, params, embed_dim=16)
        module = TrainModule(enc, loss, torch.device("cpu"), "fp32")
        out = module.encode(images, ids)
        got = (out.image_embeds is not None, out.text_embeds is not None, out.patch_embeds is not None)
        assert got == needs, (name, params, got)
        module(images, ids)["loss"].backward()
        no_grad = sorted(n for n, p in module.named_parameters() if p.grad is None)
        assert may_skip_parameters(enc, loss) == bool(no_grad), (name, params, no_grad)
        if not needs[0] and h_v:
            assert "encoder.h_v.0.weight" in no_grad
