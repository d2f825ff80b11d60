"""The onnxruntime session evalsuite runs every variant in, and pooling of its token states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.config import first_line
from evalsuite.errors import EvalsuiteError


def make_session(path: Path, threads: int, *, spinning: bool = True) -> Any:
    """An onnxruntime CPU session with the given intra-op threads and all graph optimizations.

    ``spinning=False`` stops idle worker threads from busy-waiting after a call: needed when several
    sessions take turns on the same cores (the benchmark), where one session's spinning threads would
    steal the CPU from the next.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EvalsuiteError(f"cannot load ONNX model {path}: {first_line(exc)}") from exc


def model_inputs(ids: np.ndarray, mask: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The feed of a session that takes ``names``: token ids, their attention mask and all-zero token types (one
    segment, as sentence-transformers encodes a text); inputs the graph does not take are left out."""
    every = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: every[name] for name in names}


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Sentence embeddings from token states, as sentence-transformers' Pooling and Normalize modules compute them."""
    m = mask[..., None].astype(hidden.dtype)
    if mode == "mean":
        out = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    elif mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(m > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
    elif mode == "lasttoken":
        out = hidden[np.arange(len(hidden)), mask.sum(axis=1) - 1]
    else:
        raise EvalsuiteError(f"unsupported pooling mode {mode!r}")
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32, copy=False)

