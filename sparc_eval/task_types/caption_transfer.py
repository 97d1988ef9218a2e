"""Captioning transfer: train a small caption decoder on the frozen backbone's patch embeddings, then
caption the test images and score them (the cheap analogue of the SPARC paper's Flamingo-style
experiment, Table 7: CIDEr on MSCOCO and Flickr30k with a frozen ViT).

Training images: the dataset's ``train_split`` (default ``train+restval`` of the Karpathy file),
optionally a seeded random subset of ``max_train_images``; their patch embeddings
(``engine.patch_embeddings`` -> ``model.encode_image_patches``, the joint-space patch tokens) are
extracted once and kept on the CPU in fp16 (refused above ``feature_memory_gb``). One process
only: under ``torchrun`` the task refuses to run (each rank would hold the whole buffer). The decoder
(``sparc_eval.captioner``: Perceiver resampler + transformer decoder, word vocabulary of the training
captions) is trained from scratch for ``steps`` steps, then decodes the test split (``--limit``
applies to test images) greedily or with beam search. Scores: BLEU, METEOR, ROUGE-L, CIDEr, K-P,
K-Pna and CHAIR (see ``captioning``). The generated captions are written beside the result as
``<task>.captions.json`` (COCO results format), so ``run --task <captions task> --predictions`` can rescore them.
"""
from __future__ import annotations

import json

import torch

from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..metrics.captioning import require_java
from ..params import Param
from ..task_common.captions import (
    CAPTION_METRIC_PARAMS,
    SCORING_PARAMS,
    image_references,
    score_captions,
    scoring_keys,
)
from .base import EvalContext, TaskResult, TaskType


class CaptionTransfer(TaskType):
    name = "caption_transfer"
    dataset_kind = "retrieval"
    requires = ("image_patches",)
    description = "train a small caption decoder on frozen patch embeddings; BLEU, METEOR, ROUGE-L, CIDEr, K-P, CHAIR"
    params = {
        **SCORING_PARAMS, **CAPTION_METRIC_PARAMS,
        "train_split": Param("str", "train+restval", "training split(s) of the dataset file ('+' joins splits)"),
        "max_train_images": Param("int", 0, "seeded random subset of training images (0 = all)", min=0),
        "feature_memory_gb": Param("float", 16.0, "largest fp16 training feature buffer allowed in memory (GiB)",
                                   min=0),
        "steps": Param("int", 2000, "training steps", min=1),
        "batch_size": Param("int", 64, "training images per step (one random caption each)", min=1),
        "lr": Param("float", 5e-4, "peak AdamW learning rate (linear warm-up, cosine decay)", min=0),
        "warmup_steps": Param("int", 100, "linear warm-up steps", min=0),
        "weight_decay": Param("float", 0.01, "AdamW weight decay (matrices only)", min=0),
        "d_model": Param("int", 256, "decoder width (a multiple of heads)", min=1),
        "heads": Param("int", 4, "attention heads", min=1),
        "layers": Param("int", 3, "decoder layers", min=1),
        "latents": Param("int", 16, "Perceiver resampler latents", min=1),
        "resampler_layers": Param("int", 2, "Perceiver resampler blocks", min=1),
        "dropout": Param("float", 0.1, "dropout in attention and feed-forward layers", min=0, max=1),
        "max_len": Param("int", 24, "longest caption in tokens, <bos> and <eos> included", min=2),
        "min_word_count": Param("int", 2, "training-caption count below which a word is <unk>", min=1),
        "decode": Param("str", "beam", "decoding method", choices=("greedy", "beam")),
        "beam_size": Param("int", 3, "beam width (decode: beam)", min=1),
        "length_penalty": Param("float", 0.0, "beam ranking: log-probability / length**length_penalty"),
    }

    @classmethod
    def metric_keys(cls, params):
        return scoring_keys(params, caption_metrics=True)

    def _check(self, ctx: EvalContext) -> None:
        """Refuse what would fail late: Java missing (caption metrics), widths that do not split into
        heads, and a run under torchrun (every rank would receive every batch, hold the whole feature
        buffer and train the same decoder: host memory x ranks, no speed-up)."""
        p = self.config.params
        if p["d_model"] % p["heads"]:
            raise ConfigError(f"task {self.config.name!r}: d_model={p['d_model']} is not a multiple of "
                              f"heads={p['heads']}")
        d = ctx.engine.dist
        if d is not None and d.world > 1:
            raise ConfigError(f"task {self.config.name!r} trains one caption decoder in one process; under torchrun "
                              f"each of the {d.world} ranks would hold the whole training feature buffer "
                              f"(feature_memory_gb is per process) and train the same decoder; run it without "
                              f"torchrun (one process, one GPU)")
        require_java()

    def _train_set(self, seed: int):
        from ..data.base import get_reader

        p = self.config.params
        cfg = {**self.config.dataset, "split": p["train_split"]}
        data = get_reader(self.config.dataset["format"]).load(cfg)
        idx = list(range(len(data.images)))
        if 0 < p["max_train_images"] < len(idx):
            g = torch.Generator().manual_seed(seed)
            idx = sorted(torch.randperm(len(idx), generator=g)[:p["max_train_images"]].tolist())
        return data, idx

    def _features(self, ctx: EvalContext, images, idx: list[int]) -> torch.Tensor:
        """fp16 patch embeddings [len(idx), P, D] on the CPU, in ``idx`` order."""
        buf = None
        filled = 0
        for _, pe in ctx.engine.patch_embeddings(images, idx):
            emb = pe.embeddings
            if buf is None:
                size_gb = len(idx) * emb.shape[1] * emb.shape[2] * 2 / 2 ** 30
                if size_gb > self.config.params["feature_memory_gb"]:
                    raise ConfigError(f"task {self.config.name!r}: training features need {size_gb:.1f} GiB "
                                      f"({len(idx)} images x {emb.shape[1]} patches x {emb.shape[2]} dims, fp16), "
                                      f"above feature_memory_gb={self.config.params['feature_memory_gb']}; lower "
                                      f"--param max_train_images or raise --param feature_memory_gb")
                buf = torch.empty(len(idx), emb.shape[1], emb.shape[2], dtype=torch.float16)
            buf[filled:filled + emb.shape[0]] = emb.to("cpu", torch.float16)
            filled += emb.shape[0]
        return buf

    def evaluate(self, model, ctx: EvalContext) -> TaskResult:
        from ..captioner import CaptionerConfig, Vocabulary
        from ..captioner.train import TrainSettings, caption_batch, train_captioner

        p = self.config.params
        self._check(ctx)
        test = self.load_data(ctx.limit)
        train, idx = self._train_set(ctx.seed)
        train_refs = image_references(train)
        ctx.log(f"{self.config.name}: patch embeddings of {len(idx)} training images")
        feats = self._features(ctx, train.images, idx)
        captions = [train_refs[i] for i in idx]
        vocab = Vocabulary.build([c for caps in captions for c in caps], min_count=p["min_word_count"])
        cfg = CaptionerConfig(input_dim=feats.shape[2], n_patches=feats.shape[1], vocab_size=len(vocab),
                              d_model=p["d_model"], heads=p["heads"], layers=p["layers"], n_latents=p["latents"],
                              resampler_layers=p["resampler_layers"], max_len=p["max_len"], dropout=p["dropout"])
        settings = TrainSettings(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
                                 warmup_steps=p["warmup_steps"], weight_decay=p["weight_decay"], seed=ctx.seed)
        ctx.log(f"{self.config.name}: training the caption decoder ({p['steps']} steps, vocabulary {len(vocab)})")
        captioner, train_log = train_captioner(feats, captions, vocab, cfg, settings, model.device, ctx.log)
        del feats
        generated: list[str] = []
        for _, pe in ctx.engine.patch_embeddings(test.images):
            generated += caption_batch(captioner, vocab, pe.embeddings, p["decode"], p["beam_size"], p["length_penalty"])
        scored = score_captions(test.images.ids, image_references(test), generated, p, True,
                                self.config.dataset.get("root"), ctx.log)
        details = {**scored.details, "captioner": cfg.as_dict(), "training": {
            **train_log.summary(), "images": len(idx), "split": p["train_split"], "vocabulary": len(vocab),
            "batch_size": p["batch_size"], "lr": p["lr"], "device": str(model.device)},
            "decode": {"method": p["decode"], "beam_size": p["beam_size"], "length_penalty": p["length_penalty"]},
            "empty_captions": sum(not c for c in generated), **test.info}
        if ctx.work_dir is not None:
            path = ctx.work_dir / f"{self.config.name}.captions.json"
            rows = [{"image_id": int(i) if i.isdigit() else i, "caption": c} for i, c in zip(test.images.ids, generated)]
            atomic_write_text(path, json.dumps(rows, indent=0) + "\n")
            details["captions_file"] = str(path)
        return TaskResult(metrics=scored.metrics, main_metric=self.config.main_metric, records=scored.records,
                          aggregations=scored.aggregations, details=details, n_total=test.n_total_images,
                          n_used=len(test.images), dataset_fingerprint=test.fingerprint)
