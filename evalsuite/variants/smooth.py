"""SmoothQuant (``-sq<ALPHA>``): move activation outliers into the weights before int8 quantization (not a kind).

Int8 quantization of ``X @ W`` suffers when a few input channels of ``X`` carry outliers: one scale per row (or per
tensor) must cover them, so every other channel gets few levels. SmoothQuant (Xiao et al., 2023) rescales input
channel ``j`` by ``s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)``: ``X' = X / s`` and ``W' = diag(s) W``, so
``X' @ W' == X @ W`` exactly in real arithmetic, the activations' outliers shrink and the weights take part of them.
``max|X_j|`` is measured once on calibration texts (the packaged default of static int8, one text per call, never
the evaluation texts); ``max|W_j|`` is row ``j`` of the weight.

It applies to every MatMul with a constant weight of the optimized Float32 graph. The division is an explicit ``Mul``
by ``1 / s`` in front of each such MatMul: folding it into the preceding op is exact only for a LayerNorm whose output
feeds nothing else, and the FFN output MatMuls, where all-mpnet-base-v2's outliers enter, follow a GELU. ``alpha`` is
the option's value in hundredths (``-sq50``: 0.5). The smoothed graph is then quantized by the kind as usual, and
``alpha`` and the calibration texts are part of the build's identity.

Example:
    >>> VariantSpec.parse("qint8-pc-7bit-sq50").settings["smooth"]  # doctest: +SKIP
    '50'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.variants.registry import Option

if TYPE_CHECKING:
    import onnx

    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec

SMOOTH = Option("smooth", "smooth", "SmoothQuant: migrate activation outliers into the weights, alpha in hundredths "
                "(-sq50: 0.5), calibrated on the packaged texts", prefix="sq", default=None, metavar="ALPHA")
_CLIP = 1e-5  # bounds of s: a channel that is (nearly) zero in the activations or the weight is left alone


def alpha_of(spec: VariantSpec) -> float | None:
    """The migration strength of ``spec`` (None without ``-sq``); an error unless it is 0..100 hundredths."""
    value = spec.settings.get(SMOOTH.name)
    if value is None:
        return None
    if not str(value).isdigit() or not 0 <= int(value) <= 100:
        raise EvalsuiteError(f"-sq{value}: alpha is given in hundredths, 0 to 100 (-sq50 is 0.5)")
    return int(value) / 100


def key_extras(spec: VariantSpec) -> tuple[str, ...]:
    """What smoothing adds to a build's cache key: alpha and the calibration texts (nothing without ``-sq``)."""
    from evalsuite.variants._calibration import load_calibration

    alpha = alpha_of(spec)
    return () if alpha is None else ("smooth", str(alpha), *load_calibration(None).identity())


def smoothed_parent(source: ModelSource, spec: VariantSpec, parent: Path, folder: Path) -> tuple[Path, dict[str, object]]:
    """The graph ``spec`` is quantized from: ``parent``, or (with ``-sq``) its smoothed copy written into ``folder``, with
    the facts to keep in the build's metadata."""
    out = folder / "smoothed.onnx"
    info = smooth(source, spec, parent, out)
    return (parent, {}) if info is None else (out, {"smooth": info})


def smooth(source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object] | None:
    """Write the smoothed Float32 graph of ``parent`` to ``out`` (None, and nothing written, without ``-sq``)."""
    import onnx
    from onnx import numpy_helper

    alpha = alpha_of(spec)
    if alpha is None:
        return None
    model = onnx.load(str(parent))
    targets = weighted_matmuls(model)
    peaks = activation_peaks(source, parent, [n.input[0] for n in targets])
    weights = {i.name: i for i in model.graph.initializer}
    for node in targets:
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
        x_peak = np.maximum(peaks[node.input[0]], _CLIP)
        w_peak = np.maximum(np.abs(w).max(axis=1), _CLIP)
        s = np.clip(x_peak ** alpha / w_peak ** (1 - alpha), _CLIP, 1 / _CLIP)
        weights[node.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1]))
        scale = f"{node.name}/smooth_scale"
        model.graph.initializer.append(numpy_helper.from_array((1 / s).astype(np.float32), scale))
        smoothed = f"{node.name}/smoothed_input"
        model.graph.node.append(onnx.helper.make_node("Mul", [node.input[0], scale], [smoothed], name=f"{node.name}/smooth"))
        node.input[0] = smoothed
    _topological(model)
    onnx.save(model, str(out))
    return {"alpha": alpha, "matmuls": len(targets)}


def weighted_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls whose weight is a constant 2-d initializer (rows: input channels)."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def activation_peaks(source: ModelSource, path: Path, tensors: list[str]) -> dict[str, np.ndarray]:
    """Per input channel, the largest |value| each tensor takes over the calibration texts (one text per call)."""
    import onnx

    from evalsuite.encode.session import make_session
    from evalsuite.variants._calibration import calibration_feeds, load_calibration

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    probe = path.with_name(".smooth-probe.onnx")
    onnx.save(model, str(probe))
    try:
        session = make_session(probe, threads=1)
        names = [o.name for o in session.get_outputs()]
        wanted = {n: names.index(n) for n in dict.fromkeys(tensors)}
        feeds = calibration_feeds(source, load_calibration(None), [i.name for i in session.get_inputs()])
        peaks: dict[str, np.ndarray] = {}
        for feed in feeds:
            outputs = session.run(None, feed)
            for name, index in wanted.items():
                value = np.abs(outputs[index]).reshape(-1, outputs[index].shape[-1]).max(axis=0)
                peaks[name] = np.maximum(peaks[name], value) if name in peaks else value
    finally:
        probe.unlink(missing_ok=True)
    return peaks


def _topological(model: onnx.ModelProto) -> None:
    """Put each appended Mul just before the MatMul that reads it (ONNX wants nodes in topological order)."""
    nodes = list(model.graph.node)
    added = {n.output[0]: n for n in nodes if n.name.endswith("/smooth")}
    ordered = []
    for node in nodes:
        if node.name.endswith("/smooth"):
            continue
        ordered.extend(added[i] for i in node.input if i in added)
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
