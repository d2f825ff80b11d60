"""Float16 weights (``convert_float_to_float16(keep_io_types=True)``): half the file, Float32 inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
from evalsuite.variants.registry import VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec


@register
class Float16(VariantKind):
    name = "float16"
    dtypes = ("float16",)
    summary = "weights and compute cast to half precision, float32 inputs and outputs"
    rank = 10

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(parent)))
        model.convert_float_to_float16(keep_io_types=True)
        with reporting_full_disk(out):
            model.save_model_to_file(str(out))
        return {}
