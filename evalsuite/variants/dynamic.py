"""Dynamic int8 quantization (``onnxruntime.quantization.quantize_dynamic``): int8 weights, activations scaled per batch.

qint8 and quint8 name the weight type. ``-pc`` gives each output channel its own weight scale; ``-7bit``
(``reduce_range``) keeps weights in 7 bits, which avoids int16 overflow in u8s8 kernels without VNNI.
Because activation scales are computed per call, an embedding depends on the other texts of its batch.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
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
    options = (
        Option("per_channel", "per-chan", "per-channel weight scales", {"pc": True}),
        Option("reduce_range", "7-bit", "reduce_range: 7-bit weights", {"7bit": True}),
    )

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint to the root logger
        settings = spec.settings
        # quantize_dynamic writes "<input>-inferred.onnx" beside its input: give it a copy in our own build folder,
        # so it never writes into the parent's cache entry (shared with concurrent builds) or leaves a file there.
        local = out.with_name("parent.onnx")
        with reporting_full_disk(out):
            shutil.copyfile(parent, local)
            quantize_dynamic(
                local, out, weight_type=QuantType.QInt8 if spec.dtype == "qint8" else QuantType.QUInt8,
                per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                # Fused contrib ops (BiasGelu, Attention) have no ONNX shape inference; their outputs are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        local.unlink()
        return {}
