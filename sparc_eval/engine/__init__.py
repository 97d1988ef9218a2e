"""Embedding extraction and the content-keyed embedding cache."""
from .cache import EmbeddingCache
from .extract import Engine, EngineStats

__all__ = ["EmbeddingCache", "Engine", "EngineStats"]
