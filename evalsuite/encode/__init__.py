"""Texts -> embeddings with one ONNX file: tokenizer, batch policy, onnxruntime session, pooling, embedding cache."""

from evalsuite.encode.encoder import OnnxEncoder, PromptKind
from evalsuite.encode.policy import BatchPolicy, pad_batch, plan_batches
from evalsuite.encode.session import make_session, pool
from evalsuite.encode.tokenizer import TextTokenizer, Tokenized

__all__ = ["BatchPolicy", "OnnxEncoder", "PromptKind", "TextTokenizer", "Tokenized", "make_session", "pad_batch",
           "plan_batches", "pool"]
