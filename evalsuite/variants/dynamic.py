"""Dynamic int8 quantization (``onnxruntime.quantization.quantize_dynamic``): int8 weights, activations scaled per batch.

qint8 and quint8 name the weight type. ``-pc`` gives each output channel its own weight scale; ``-7bit``
(``reduce_range``) keeps weights in 7 bits, which avoids int16 overflow in u8s8 kernels without VNNI.
Because activation scales are computed per call, an embedding depends on the other texts of its batch.
``-sq<ALPHA>`` smooths activation outliers into the weights first (see :mod:`smooth`); ``-x<NAME>`` keeps the nodes
listed in ``configs/mixed/<NAME>.yaml`` in float (see :mod:`float_nodes`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
from evalsuite.variants import float_nodes, smooth
from evalsuite.variants._quiet import quiet_quantizer
from evalsuite.variants.registry import Option, VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec


@register
class Dynamic(VariantKind):
    name = "dynamic"
    dtypes = ("qint8", "quint8")
    summary = "dynamic quantization: weight type of onnxruntime's quantize_dynamic"
    rank = 20
    batch_dependent = True
    options = (
        Option("per_channel", "per-chan", "per-channel weight scales", {"pc": True}),
        Option("reduce_range", "7-bit", "reduce_range: 7-bit weights", {"7bit": True}),
        smooth.SMOOTH,
        float_nodes.FLOAT_NODES,
    )

    def validate(self, spec: VariantSpec) -> None:
        smooth.alpha_of(spec)

    def key_extras(self, source: ModelSource, spec: VariantSpec) -> tuple[str, ...]:
        return (*smooth.key_extras(spec), *float_nodes.key_extras(source, spec))

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        import onnx

        parent, info = smooth.smoothed_parent(source, spec, parent, out.parent)
        mixed = float_nodes.mixed_config(source, spec)
        if mixed is None:
            quantize(spec, parent, out)
            if info:
                parent.unlink()  # the smoothed copy: not part of the cached build
            return info
        graph = onnx.load(str(parent), load_external_data=False)
        float_nodes.check_nodes(mixed, float_nodes.quantizable_nodes(graph), {n.name for n in graph.graph.node}, graph)
        full_range = float_nodes.weight_inputs(graph, mixed.full_range)
        quantize(spec, parent, out, exclude=mixed.nodes, full_range_weights=full_range.values())
        if info:
            parent.unlink()  # the smoothed copy: not part of the cached build
        return info | {"float_nodes": sorted(mixed.nodes)} | ({"full_range_nodes": sorted(full_range)} if full_range else {})


def quantize(spec: VariantSpec, parent: Path, out: Path, *, exclude: Sequence[str] = (),
             only: Sequence[str] | None = None, full_range_weights: Iterable[str] = ()) -> None:
    """``quantize_dynamic`` with the settings of ``spec``; ``exclude`` nodes stay float, ``only`` quantizes just those,
    and the ``full_range_weights`` initializers keep 8 bits under ``-7bit``.

    Example:
        >>> quantize(VariantSpec.parse("qint8-7bit"), parent, out, only=["Attention_0"])  # doctest: +SKIP
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = spec.settings
    # quantize_dynamic writes "<input>-inferred.onnx" beside its input: give it a copy in our own build folder,
    # so it never writes into the parent's cache entry (shared with concurrent builds) or leaves a file there.
    local = out.with_name("parent.onnx")
    # A per-channel override must name the channel axis (the weight's last, as quantize_dynamic quantizes MatMul and
    # Attention weights per channel), or onnxruntime refuses it.
    override = {"axis": -1, "reduce_range": False} if settings["per_channel"] else {"reduce_range": False}
    full_range = {w: [dict(override)] for w in full_range_weights}
    with reporting_full_disk(out), quiet_quantizer():
        shutil.copyfile(parent, local)
        quantize_dynamic(
            local, out, weight_type=QuantType.QInt8 if spec.dtype == "qint8" else QuantType.QUInt8,
            per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
            nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only is not None else [],
            # Fused contrib ops (BiasGelu, Attention) have no ONNX shape inference; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT} | ({"TensorQuantOverrides": full_range} if full_range else {}),
        )
    local.unlink()
