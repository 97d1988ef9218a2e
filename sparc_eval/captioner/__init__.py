"""A small caption decoder trained from scratch on a frozen backbone's patch embeddings.

The cheap analogue of the SPARC paper's Flamingo experiment (Table 7): patch embeddings [B, P, D] ->
a Perceiver resampler (learned latents cross-attending to the patches) -> a small causal transformer
decoder over a word vocabulary built from the training captions; teacher-forced cross-entropy,
greedy or beam decoding. Runs on CUDA (bf16 autocast) or tiny on CPU.
"""
from .model import Captioner, CaptionerConfig
from .vocab import Vocabulary

__all__ = ["Captioner", "CaptionerConfig", "Vocabulary"]
