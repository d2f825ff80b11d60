"""Model -> ONNX file per variant: export Float32, validate it, optimize, then quantize or cast to Float16.

Every artifact is addressed by content (weights hash + variant + converter and library versions), built
in a temporary folder, renamed into place, and verified by hash when read, so a killed or concurrent
build never leaves a broken file that is later used.

Example:
    >>> art = build_variant(resolve_model(DEFAULT_MODEL), VariantSpec.parse("qint8-pc-7bit"), cache_dir)  # doctest: +SKIP
    >>> art.path.name, art.size_bytes  # doctest: +SKIP
    ('model.onnx', 23068254)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.machine import versions
from evalsuite.models import ModelSource
from evalsuite.store import atomic_write_json, file_lock, remove_leftovers, sha256_file, sha256_text
from evalsuite.variants import VariantSpec

# Bump when a change here changes the bytes of any artifact.
CONVERTER_VERSION = "1"
EXPORT_TOLERANCE = 1e-3
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# (batch, length) pairs for validation, none equal to the export shape (2, 16).
_CHECK_SHAPES = ((1, 7), (3, 61), (5, None))
_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    """An ONNX file in the cache and what is known about it."""

    variant: VariantSpec
    path: Path
    sha256: str
    size_bytes: int
    meta: dict[str, object]


def build_variant(source: ModelSource, spec: VariantSpec, cache_dir: Path,
                  progress: Callable[[str], None] | None = None) -> Artifact:
    """The ONNX file for ``spec``, built (with everything it derives from) only when not already cached."""
    say = progress or (lambda _msg: None)
    folder = artifact_dir(source, spec.name, cache_dir)
    cached = _load(folder, spec)
    if cached is not None:
        return cached
    # Derive from the optimized Float32 at the same level, itself derived from the raw export.
    if spec.dtype == "float32":
        parent = _raw_export(source, cache_dir, say)
    else:
        parent = build_variant(source, VariantSpec("float32", opt_level=spec.opt_level), cache_dir, progress)
    with file_lock(folder):
        cached = _load(folder, spec)
        if cached is not None:  # another process built it while we waited
            return cached
        say(f"building {spec.name}")
        started = time.perf_counter()
        return _commit(folder, spec, lambda out: _derive(source, spec, parent.path, out), started, {"parent_sha256": parent.sha256})


def artifact_dir(source: ModelSource, name: str, cache_dir: Path) -> Path:
    lib = versions()
    key = sha256_text(source.weights_sha256, name, CONVERTER_VERSION,
                      *(lib[p] for p in ("torch", "transformers", "onnx", "onnxruntime")))
    return cache_dir / "onnx" / source.weights_sha256[:16] / f"{name}-{key[:12]}"


def _raw_export(source: ModelSource, cache_dir: Path, say: Callable[[str], None]) -> Artifact:
    folder = artifact_dir(source, "export", cache_dir)
    spec = VariantSpec("float32", opt_level=0)
    cached = _load(folder, spec)
    if cached is not None:
        return cached
    with file_lock(folder):
        cached = _load(folder, spec)
        if cached is not None:
            return cached
        say("exporting Float32 ONNX")
        started = time.perf_counter()
        info: dict[str, object] = {}

        def produce(out: Path) -> None:
            info.update(export_onnx(source, out))

        return _commit(folder, spec, produce, started, info)


def _commit(folder: Path, spec: VariantSpec, produce: Callable[[Path], None], started: float,
            extra: dict[str, object]) -> Artifact:
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)  # temporary folders of builds that were killed; we hold the folder's lock
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        produce(tmp / "model.onnx")
        meta = {
            "variant": spec.name,
            "sha256": sha256_file(tmp / "model.onnx"),
            "size_bytes": (tmp / "model.onnx").stat().st_size,
            "build_seconds": round(time.perf_counter() - started, 2),
            "versions": versions(),
            **extra,
        }
        atomic_write_json(tmp / "meta.json", meta)
        if folder.exists():
            shutil.rmtree(folder)  # a corrupt entry that _load rejected
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = _load(folder, spec)
    assert loaded is not None  # just written and verified
    return loaded


def _load(folder: Path, spec: VariantSpec) -> Artifact | None:
    """The cached artifact if its file matches the hash recorded at build time, else None."""
    meta_path, onnx_path = folder / "meta.json", folder / "model.onnx"
    if not folder.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        valid = (isinstance(meta, dict) and meta.get("variant") == spec.name and onnx_path.is_file()
                 and onnx_path.stat().st_size == meta.get("size_bytes") and sha256_file(onnx_path) == meta.get("sha256"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON; or removed while we read it
        valid = False
    if not valid:
        log.warning("cache entry %s is incomplete or corrupted; rebuilding it", folder)
        return None
    return Artifact(spec, onnx_path, meta["sha256"], meta["size_bytes"], meta)


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
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModel.from_pretrained(source.path, attn_implementation="eager").eval()
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    wrapper = _export_module(model, names)
    dummy = tokenizer(["evalsuite exports this model", "with dynamic axes"], padding=True, return_tensors="pt")
    with torch.no_grad():
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
    roberta_like = config.model_type in _ROBERTA_LIKE
    pad = getattr(config, "pad_token_id", 1) or 1

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


def _validate_export(model: object, tokenizer: object, names: list[str], path: Path, max_len: int) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failing shape is reported below, in one line
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
            got = session.run(None, {n: enc[n].numpy() for n in names})[0]
        except Exception as exc:  # onnxruntime's Fail/InvalidArgument: a shape was baked into the graph at export
            shape = tuple(enc["input_ids"].shape)
            raise EvalsuiteError(f"the exported ONNX graph fails on input shape {shape}, which differs from the export "
                                 f"shape: the graph is not shape-generic ({str(exc).splitlines()[0][:160]})") from exc
        valid = enc["attention_mask"].numpy()[..., None].astype(bool)
        worst = max(worst, float(np.abs(np.where(valid, got - ref, 0.0)).max()))
    return worst


def _derive(source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> None:
    if spec.dtype == "float32":
        _optimize(source, spec.opt_level, parent, out)
    elif spec.dtype == "float16":
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(parent)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(out))
    else:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint to the root logger
        quantize_dynamic(
            parent, out, weight_type=QuantType.QInt8 if spec.dtype == "qint8" else QuantType.QUInt8,
            per_channel=spec.per_channel, reduce_range=spec.reduce_range,
            # Fused contrib ops (BiasGelu, Attention) have no ONNX shape inference; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _optimize(source: ModelSource, level: int, raw: Path, out: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    optimized = optimize_model(
        str(raw), model_type="bert", opt_level=level,
        num_heads=int(config.get("num_attention_heads", 0)), hidden_size=int(config.get("hidden_size", 0)),
    )
    optimized.save_model_to_file(str(out))


def check_onnx(path: Path) -> None:
    """Raise a one-line error when ``path`` is not a loadable ONNX model."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise EvalsuiteError(f"broken ONNX file {path}: {str(exc).splitlines()[0][:200]}") from exc
