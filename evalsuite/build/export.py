"""The raw Float32 export: ``torch.onnx.export`` with dynamic axes, then checked against PyTorch.

The check runs on batch sizes, lengths and padding not used at export, so a graph that froze a shape
or ignores the attention mask is rejected before anything is derived from it.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.config import first_line
from evalsuite.errors import EvalsuiteError
from evalsuite.files import reporting_full_disk
from evalsuite.models import ROBERTA_LIKE, ModelSource

EXPORT_TOLERANCE = 1e-3
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# (batch, length) pairs for validation, none equal to the export shape (2, 16).
_CHECK_SHAPES = ((1, 7), (3, 61), (5, None))


def export_onnx(source: ModelSource, out: Path) -> dict[str, object]:
    """Export the transformer to ONNX Float32 with dynamic batch and sequence axes, then check it against PyTorch.

    Eager attention and explicit position ids are used because, with transformers 5.x, the legacy
    exporter otherwise bakes the export length into the mask and position-id computations.
    """
    import warnings

    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", module=r"(torch|transformers)\..*")  # tracer chatter; the check below is what counts
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except Exception as exc:  # transformers raises many types for a damaged or missing tokenizer file
        raise EvalsuiteError(f"cannot load the tokenizer of {source.path}: {first_line(exc)}") from exc
    try:
        model = AutoModel.from_pretrained(source.path, attn_implementation="eager").eval()
    except Exception as exc:  # damaged weights or config.json
        raise EvalsuiteError(f"cannot load the model in {source.path}: {first_line(exc)}") from exc
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    wrapper = _export_module(model, names)
    dummy = tokenizer(["evalsuite exports this model", "with dynamic axes"], padding=True, return_tensors="pt")
    with torch.no_grad(), reporting_full_disk(out):
        torch.onnx.export(
            wrapper, tuple(dummy[n] for n in names), str(out), input_names=names, output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    del model, wrapper
    # Tracing leaves the traced module in a state that no longer matches eager PyTorch: compare with a fresh copy.
    reference = AutoModel.from_pretrained(source.path).eval()
    max_diff = _validate_export(reference, tokenizer, names, out, source.settings.max_seq_length)
    if max_diff > EXPORT_TOLERANCE:
        raise EvalsuiteError(f"ONNX export of {source.model_id} differs from PyTorch by {max_diff:.2e} (> {EXPORT_TOLERANCE}) "
                             "on shapes and padding not used at export; the graph is not shape-generic or ignores the attention mask")
    return {"export_max_abs_diff": max_diff, "export_check_shapes": [list(s) for s in _CHECK_SHAPES], "inputs": names}


def _export_module(model: object, names: list[str]) -> object:
    """A torch module with positional inputs that computes position ids the way the model family does."""
    import torch

    config = model.config  # type: ignore[attr-defined]
    roberta_like = config.model_type in ROBERTA_LIKE
    # The padding index the model's own embeddings count positions from (MPNet hard-codes 1, RoBERTa takes
    # config.pad_token_id); ``pad_token_id or 1`` would turn a pad id of 0 into 1.
    pad = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    if pad is None:
        pad = 1 if getattr(config, "pad_token_id", None) is None else config.pad_token_id

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kwargs = dict(zip(names, inputs, strict=True))
            ids = kwargs["input_ids"]
            if roberta_like:
                mask = ids.ne(pad).long()
                kwargs["position_ids"] = torch.cumsum(mask, dim=1) * mask + pad
            elif config.model_type != "distilbert":
                kwargs["position_ids"] = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
            return self.model(**kwargs).last_hidden_state

    return Wrapper()


def check_optimized(source: ModelSource, path: Path) -> float:
    """Compare an optimized Float32 graph with PyTorch like the raw export; raise when a fusion changed the numbers.

    Example:
        >>> check_optimized(source, cache / "float32-1a2b/model.onnx")  # doctest: +SKIP
        9.5e-07
    """
    import warnings

    from transformers import AutoModel, AutoTokenizer

    warnings.filterwarnings("ignore", module=r"(torch|transformers)\..*")
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModel.from_pretrained(source.path).eval()
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    max_diff = _validate_export(model, tokenizer, names, path, source.settings.max_seq_length)
    if max_diff > EXPORT_TOLERANCE:
        raise EvalsuiteError(f"the optimized ONNX graph of {source.model_id} differs from PyTorch by {max_diff:.2e} "
                             f"(> {EXPORT_TOLERANCE}): an onnxruntime fusion does not fit this model family")
    return max_diff


def _validate_export(model: object, tokenizer: object, names: list[str], path: Path, max_len: int) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing shape is reported below, in one line
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # PyTorch gets every input the tokenizer makes, the graph only those it declares: a fusion that drops the
    # attention mask must show up as a difference on the padded rows, not as an "unknown input" error.
    graph_inputs = {i.name for i in session.get_inputs()}
    worst = 0.0
    words = "the quick brown fox jumps over a lazy dog while evaluation runs".split()
    for batch, length in _CHECK_SHAPES:
        length = length or max_len
        texts = [" ".join(words[(i + j) % len(words)] for j in range(length - 3 * i)) for i in range(batch)]
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")  # type: ignore[operator]
        # Words may split into several tokens and every row be truncated to ``length``: pad rows 2.. to shorter
        # lengths explicitly, so the check always covers padding (a graph that ignores the mask must fail it).
        for i in range(1, batch):
            keep = max(2, length - (length * i) // batch)
            enc["input_ids"][i, keep:] = getattr(tokenizer, "pad_token_id", None) or 0
            enc["attention_mask"][i, keep:] = 0
        with torch.no_grad():
            ref = model(**{n: enc[n] for n in names}).last_hidden_state.numpy()  # type: ignore[operator]
        try:
            got = session.run(None, {n: enc[n].numpy() for n in names if n in graph_inputs})[0]
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument: a shape was baked into the graph at export
            shape = tuple(enc["input_ids"].shape)
            raise EvalsuiteError(f"the exported ONNX graph fails on input shape {shape}, which differs from the export "
                                 f"shape: the graph is not shape-generic ({first_line(exc, 160)})") from exc
        valid = enc["attention_mask"].numpy()[..., None].astype(bool)
        worst = max(worst, float(np.abs(np.where(valid, got - ref, 0.0)).max()))
    return worst


def check_onnx(path: Path) -> None:
    """Raise a one-line error when ``path`` is not a loadable ONNX model."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise EvalsuiteError(f"broken ONNX file {path}: {first_line(exc)}") from exc
