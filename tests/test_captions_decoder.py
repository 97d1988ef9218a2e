"""The caption decoder: vocabulary, decoding rules, and that training learns a feature->caption mapping."""
from __future__ import annotations

import torch

from sparc_eval.captioner import Captioner, CaptionerConfig, Vocabulary
from sparc_eval.captioner.decode import beam_search, greedy
from sparc_eval.captioner.train import TrainSettings, caption_batch, train_captioner
from sparc_eval.captioner.vocab import BOS, EOS, UNK

KINDS, COLOURS = ["circle", "square", "star", "cross"], ["red", "blue", "green"]


def test_vocabulary_is_deterministic_and_round_trips():
    v = Vocabulary.build(["A red circle.", "a blue circle", "the man's hat, a circle!"], min_count=2)
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "circle"]
    assert v.encode("A red circle", max_len=10) == [BOS, 4, UNK, 5, EOS]
    assert v.encode("a a a a a a", max_len=4) == [BOS, v.stoi["a"], v.stoi["a"], EOS]
    assert v.decode([v.stoi["a"], UNK, v.stoi["circle"], EOS, v.stoi["a"]]) == "a circle"
    assert Vocabulary.build(["the man's hat"]).itos[4:] == ["hat", "man's", "the"]


def _toy():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(24, 4, 8, generator=g) * 0.1
    caps = []
    for i in range(24):
        feats[i, 0, i % 4] += 3
        feats[i, 1, 4 + i % 3] += 3
        caps.append([f"a {COLOURS[i % 3]} {KINDS[i % 4]}", f"one {COLOURS[i % 3]} {KINDS[i % 4]} on grey"])
    return feats, caps


def test_training_learns_and_beam_of_one_is_greedy():
    feats, caps = _toy()
    vocab = Vocabulary.build([c for cs in caps for c in cs])
    cfg = CaptionerConfig(input_dim=8, n_patches=4, vocab_size=len(vocab), d_model=32, heads=2, layers=1,
                          n_latents=4, resampler_layers=1, max_len=12, dropout=0.0)
    settings = TrainSettings(steps=80, batch_size=16, lr=5e-3, warmup_steps=8, log_every=0)
    model, log = train_captioner(feats, caps, vocab, cfg, settings, torch.device("cpu"), log=lambda m: None)
    assert log.summary()["final_loss"] < 0.5 < log.summary()["first_loss"]
    out = caption_batch(model, vocab, feats, "beam", beam_size=3)
    exact = sum(o in c for o, c in zip(out, caps))
    assert exact >= 20, list(zip(out, caps))
    assert greedy(model, feats) == beam_search(model, feats, beam_size=1)
    short = TrainSettings(steps=3, batch_size=8, log_every=0)
    one, _ = train_captioner(feats, caps, vocab, cfg, short, torch.device("cpu"), log=lambda m: None)
    two, _ = train_captioner(feats, caps, vocab, cfg, short, torch.device("cpu"), log=lambda m: None)
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values()))


def test_untrained_decoder_never_emits_specials_or_empty_captions():
    torch.manual_seed(0)
    vocab = Vocabulary.build(["a red circle", "a blue star"])
    model = Captioner(CaptionerConfig(input_dim=8, n_patches=4, vocab_size=len(vocab), d_model=16, heads=2,
                                      layers=1, n_latents=2, resampler_layers=1, max_len=6)).eval()
    feats = torch.randn(5, 4, 8)
    for method in ("greedy", "beam"):
        caps = caption_batch(model, vocab, feats, method, beam_size=2)
        assert all(caps) and all(len(c.split()) <= 5 for c in caps)
        assert not any(w.startswith("<") for c in caps for w in c.split())
