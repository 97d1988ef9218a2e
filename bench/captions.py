"""Caption scoring costs, measured side by side in one process.

    .venv/bin/python bench/captions.py [--images 5000]

- METEOR: the JVM start (JVM + paraphrase table, paid once per process by ``meteor_scorer``) against one
  warm scoring of ``--images`` captions, and against what restarting the JVM per task would cost;
- PTB tokenizer: one JVM call for references + predictions together;
- K-Precision / K-Pna of ``--images`` captions (spaCy tagging included) and the exact chance
  computation over a pool of 5 x ``--images`` captions;
- top-1 search: blockwise (memory-bounded) against one dense N x M product, time and peak score memory.
Wall and CPU times are printed: on a shared machine wall time includes waiting for a core.
"""
from __future__ import annotations

import argparse
import random
import time

import torch


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    n = ap.parse_args().images
    rng = random.Random(0)
    words = ("a man woman dog cat red blue green sitting riding on top of next to the street table pizza bus "
             "train large small two people with holding").split()

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))

    refs = {str(i): [sentence() for _ in range(5)] for i in range(n)}
    preds = {str(i): sentence() for i in range(n)}

    from sparc_eval.metrics import captioning

    (_, startup), w, _ = timed(captioning.meteor_scorer)
    print(f"METEOR JVM start (JVM + paraphrase table): {startup:.2f} s wall")
    gts, res = captioning.ptb_tokenize(refs, preds)
    meteor, _ = captioning.meteor_scorer()
    _, w_score, _ = timed(lambda: meteor.compute_score(gts, res))
    print(f"METEOR warm scoring of {n} captions: {w_score:.2f} s; start-up / scoring = {startup / w_score:.1f}x; "
          f"a run of 3 caption tasks pays {startup:.1f} s once instead of {3 * startup:.1f} s")
    _, w, c = timed(lambda: captioning.ptb_tokenize(refs, preds))
    print(f"PTB tokenizer ({6 * n} sentences, one JVM call): {w:.2f} s wall, {c:.2f} s CPU in Python")
    _, w, c = timed(lambda: captioning.caption_scores(refs, preds))
    print(f"all caption metrics (BLEU, METEOR warm, ROUGE-L, CIDEr) for {n} images: {w:.2f} s wall")

    from sparc_eval.metrics.kprecision import chance_k_precision, k_precision_refs
    from sparc_eval.text import pos
    from sparc_eval.text.normalize import noun_adj_tokens, tokens

    ref_tok = [[tokens(r) for r in refs[k]] for k in refs]

    def kp():
        tagged = pos.analyse_many(list(preds.values()))
        return [(k_precision_refs(tokens(c), r), k_precision_refs(noun_adj_tokens(c, t), r))
                for c, t, r in zip(preds.values(), tagged, ref_tok)]

    pos.load_pipeline()
    _, w, c = timed(kp)
    print(f"K-P + K-Pna of {n} captions (spaCy tagging included): {w:.2f} s wall, {c:.2f} s CPU")
    pool = [tokens(r) for rs in refs.values() for r in rs]
    _, w, c = timed(lambda: chance_k_precision(pool, ref_tok))
    print(f"exact chance K-P over a pool of {len(pool)} captions x {n} images: {w:.2f} s wall, {c:.2f} s CPU")

    from sparc_eval.task_types.caption_faithfulness import top1_texts

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(5 * n, 512, generator=g), dim=-1)
    (best, _), w_blk, _ = timed(lambda: top1_texts(img, txt, block=1024))
    dense, w_dense, _ = timed(lambda: (img @ txt.T).argmax(1))
    assert torch.equal(best, dense)
    blk_mb = 1024 * 8192 * 4 / 2 ** 20
    dense_mb = n * 5 * n * 4 / 2 ** 20
    print(f"top-1 search {n} x {5 * n}: blockwise {w_blk:.2f} s vs dense {w_dense:.2f} s "
          f"(ratio {w_blk / w_dense:.2f}); peak score memory {blk_mb:.0f} MB vs {dense_mb:.0f} MB")


if __name__ == "__main__":
    main()
