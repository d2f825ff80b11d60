"""Static int8 quantization (``onnxruntime.quantization.quantize_static``): activation ranges fixed by calibration.

``static8`` quantizes the dense MatMuls of the optimized Float32 graph (attention output, FFN in and out) to int8
weights and uint8 activations whose scales were measured once, on calibration texts, instead of per call as in
dynamic quantization. An embedding therefore does not depend on its batch neighbours or on padding.

Options: ``-pc`` per-channel weight scales; ``-entropy`` / ``-pct`` the Entropy or Percentile (99.999) calibrator
instead of MinMax; ``-qop`` QOperator format (QLinearMatMul) instead of QDQ; ``-cal<NAME>`` calibrates on
``configs/calibration/<NAME>.txt`` (working directory, one text per line) instead of the packaged default, 256
paragraphs of Python's documentation (see :mod:`evalsuite.variants._calibration`; never the evaluation texts);
``-x<NAME>`` keeps the MatMuls listed in ``configs/mixed/<NAME>.yaml`` in float (see :mod:`float_nodes`).

How it is built (each step fixes a measured pitfall, docs/research/quantization-kinds.md):

* ``quant_pre_process(skip_optimization=True)``: symbolic shape inference types the outputs of the fused
  contrib ops; without it the MatMuls that read them get no activation quantization at all.
* ``op_types_to_quantize=["MatMul"]``: other ops (EmbedLayerNormalization, Attention) have no QDQ kernel and
  would only run in float on rounded weights. MatMuls whose second input is not a constant stay float.
* ``OpTypesToExcludeOutputQuantization=["MatMul"]``: MatMul outputs stay float (QDQ then runs as
  MatMulIntegerToFloat); rounding them costs 0.06 of cosine. QOperator cannot do this (QLinearMatMul's output is
  8-bit), which is why QDQ is the default.
* ``CalibStridedMinMax=1`` with one unpadded text per feed: histogram calibrators fail on feeds of different
  lengths otherwise, and padding would widen the ranges.
* Float side inputs: the QDQ quantizer rewires every consumer of a quantized tensor to its dequantized copy, so
  the residual stream into SkipLayerNormalization would be rounded too; those consumers get the float tensor back.

Example:
    >>> VariantSpec.parse("static8-pc-pct").settings  # doctest: +SKIP
    {'per_channel': True, 'calibrate_method': 'percentile', 'quant_format': 'qdq', 'calibration': 'default'}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
from evalsuite.variants import float_nodes, smooth
from evalsuite.variants._calibration import DEFAULT, USER_DIR, FeedReader, calibration_feeds, load_calibration
from evalsuite.variants._quiet import quiet_quantizer
from evalsuite.variants.registry import Option, VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec

PERCENTILE = 99.999  # 99.99 clips too much on MiniLM (cosine 0.9909 vs 0.9957)


@register
class StaticInt8(VariantKind):
    name = "static"
    dtypes = ("static8",)
    summary = "static int8: s8 weights, u8 activations with ranges calibrated on a fixed text set"
    rank = 30
    options = (
        Option("per_channel", "per-chan", "per-channel weight scales", {"pc": True}),
        Option("calibrate_method", "calib", "static8 calibrator: Entropy or Percentile 99.999 (default MinMax)",
               {"entropy": "entropy", "pct": "percentile"}, default="minmax"),
        Option("quant_format", "format", "static8 QOperator format, QLinearMatMul (default QDQ)",
               {"qop": "qoperator"}, default="qdq"),
        Option("calibration", "calib-texts", f"static8 calibration texts {USER_DIR}/<NAME>.txt, one per line "
               "(default: packaged prose from Python's docs)", prefix="cal", default=DEFAULT),
        smooth.SMOOTH,
        float_nodes.FLOAT_NODES,
    )
    in_all = False  # its own `static` set instead
    sets = {"static": ("static8-pc", "static8-pc-entropy", "static8-pc-pct", "static8-pc-qop", "static8")}

    def validate(self, spec: VariantSpec) -> None:
        smooth.alpha_of(spec)

    def key_extras(self, source: ModelSource, spec: VariantSpec) -> tuple[str, ...]:
        s = source.settings  # how calibration texts are tokenized
        cal = load_calibration(spec.settings["calibration"])
        return (*cal.identity(), str(s.max_seq_length), str(s.lowercase), s.document_prefix,
                *smooth.key_extras(spec), *float_nodes.key_extras(source, spec))

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        settings = spec.settings
        cal = load_calibration(settings["calibration"])
        parent, smoothed = smooth.smoothed_parent(source, spec, parent, out.parent)
        pre = out.with_name("pre.onnx")
        model = onnx.load(str(parent))
        mixed = float_nodes.mixed_config(source, spec)
        if mixed is not None:
            constants = {i.name for i in model.graph.initializer}
            weighted = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]
            float_nodes.check_nodes(mixed, weighted, {n.name for n in model.graph.node})
        feeds = calibration_feeds(source, cal, [i.name for i in model.graph.input])
        started = time.perf_counter()
        with reporting_full_disk(out), quiet_quantizer():
            quant_pre_process(str(parent), str(pre), skip_optimization=True)
            quantize_static(
                str(pre), str(out), FeedReader(feeds),
                quant_format=QuantFormat.QDQ if settings["quant_format"] == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=["MatMul"], nodes_to_exclude=variable_matmuls(model) + list(mixed.nodes if mixed else ()),
                per_channel=settings["per_channel"], reduce_range=False,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[settings["calibrate_method"]],
                extra_options={"CalibStridedMinMax": 1, "OpTypesToExcludeOutputQuantization": ["MatMul"],
                               "CalibPercentile": PERCENTILE},
            )
            rewired = float_side_inputs(out) if settings["quant_format"] == "qdq" else 0
        pre.unlink()
        if smoothed:
            parent.unlink()  # the smoothed copy: not part of the cached build
        return {"calibration": {**cal.to_dict(), "max_seq_length": source.settings.max_seq_length,
                                "seconds": round(time.perf_counter() - started, 2)},
                "float_side_inputs": rewired} | smoothed | ({"float_nodes": sorted(mixed.nodes)} if mixed else {})


def variable_matmuls(model) -> list[str]:  # noqa: ANN001
    """MatMuls whose second input is not an initializer (Q x K^T, attention x V): the QDQ quantizer ignores
    ``MatMulConstBOnly`` and would quantize them, and they are no weight to calibrate."""
    constants = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in constants]


def float_side_inputs(path: Path) -> int:
    """Give consumers that are not quantized MatMuls the float tensor instead of its QuantizeLinear ->
    DequantizeLinear copy; return how many inputs were rewired. Rewrites ``path`` in place."""
    import onnx

    model = onnx.load(str(path))
    nodes = model.graph.node
    quantized = {n.output[0]: n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}  # q tensor -> float tensor
    dequantized = {n.output[0]: quantized[n.input[0]] for n in nodes
                   if n.op_type == "DequantizeLinear" and n.input[0] in quantized}  # dq tensor -> float tensor
    weights = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] not in quantized}
    count = 0
    for node in nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (node.op_type == "MatMul" and node.input[1] in weights):
            continue
        for i, name in enumerate(node.input):
            if name in dequantized:
                node.input[i] = dequantized[name]
                count += 1
    if count:
        onnx.save(model, str(path))
    return count
