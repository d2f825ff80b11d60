"""Embeddings on disk: checksummed ``.npy`` shards, checked for shape and dtype before they are trusted.

A shard is keyed by everything that decides its vectors (ONNX hash, encoding settings, batch policy and
the exact texts of its batches); the key is computed by the encoder, this module only stores and checks.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from evalsuite.files import read_blob, remove_stale_temp_files, write_blob

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Shards of one ONNX file's embeddings under ``<cache>/embeddings/<onnx sha256[:16]>/``."""

    def __init__(self, cache_dir: Path, onnx_sha256: str) -> None:
        self.folder = cache_dir / "embeddings" / onnx_sha256[:16]
        if self.folder.is_dir():  # temporary files of shard writes that a killed run left behind
            remove_stale_temp_files(self.folder)

    def get(self, key: str, rows: int) -> np.ndarray | None:
        """The stored float32 matrix with ``rows`` rows, or None (missing, damaged, or of another shape: removed)."""
        path = self.folder / f"{key}.npy"
        payload = read_blob(path)
        if payload is None:
            return None
        try:
            vectors = np.load(io.BytesIO(payload), allow_pickle=False)
            valid = vectors.dtype == np.float32 and vectors.ndim == 2 and vectors.shape[0] == rows and np.isfinite(vectors).all()
        except ValueError:  # not an .npy payload
            valid = False
        if not valid:
            log.warning("embedding shard %s has the wrong shape or type; recomputing it", path)
            path.unlink(missing_ok=True)
            return None
        return vectors

    def put(self, key: str, vectors: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        write_blob(self.folder / f"{key}.npy", buf.getvalue())
