"""Int4 weight-only quantization (onnxruntime's ``MatMulNBitsQuantizer``): 4-bit weights in blocks, float compute.

Every MatMul with a constant weight becomes a ``MatMulNBits`` node: the weight is cut along its input dimension
into blocks of ``block_size`` values, each block stored as 4-bit integers with its own float scale (and, when
asymmetric, its own 4-bit zero point). Activations are not quantized from batch-wide statistics, so embeddings do
not depend on batch neighbours. On the optimized graph the fused Attention keeps its QKV weight in float (only
MatMul is handled), as does the word-embedding table.

Options: ``-b16`` / ``-b64`` / ``-b128`` block size (default 32); ``-asym`` a zero point per block (default
symmetric); ``-acc1`` ... ``-acc4`` MatMulNBits ``accuracy_level``, the compute type of the kernel (1 fp32,
2 fp16, 3 bf16, 4 int8 activations quantized per row and block on the fly; default: the kernel's own choice).
Needs the ``onnx-ir`` package, which onnxruntime's quantizer imports but does not declare.

Example:
    >>> VariantSpec.parse("int4-b16-asym").settings  # doctest: +SKIP
    {'block_size': 16, 'asymmetric': True, 'accuracy_level': 0}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.errors import EvalsuiteError
from evalsuite.files import reporting_full_disk
from evalsuite.variants._quiet import quiet_quantizer
from evalsuite.variants.registry import Option, VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec


@register
class Int4(VariantKind):
    name = "int4"
    dtypes = ("int4",)
    summary = "int4 weight-only: MatMul weights in 4-bit blocks (MatMulNBits), float activations"
    rank = 40
    options = (
        Option("block_size", "block", "int4 weights per block along the input dimension (default 32)",
               {"b16": 16, "b32": 32, "b64": 64, "b128": 128}, default=32),
        Option("asymmetric", "asym", "int4 zero point per block (default symmetric)", {"asym": True}),
        Option("accuracy_level", "acc", "int4 MatMulNBits accuracy_level: 1 fp32, 2 fp16, 3 bf16, 4 int8 compute "
               "(default: the kernel's)", {"acc1": 1, "acc2": 2, "acc3": 3, "acc4": 4}, default=0),
    )
    in_all = False  # its own `int4` set instead
    sets = {"int4": ("int4", "int4-b16", "int4-asym", "int4-b128", "int4-acc4")}

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        import onnx
        from onnxruntime.quantization.quant_utils import QuantFormat

        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError as exc:  # onnxruntime's quantizer imports onnx_ir without declaring it
            raise EvalsuiteError(f"int4 needs the onnx-ir package ({exc}): pip install 'onnx-ir>=1.1'") from exc

        settings = spec.settings
        with quiet_quantizer():
            quantizer = MatMulNBitsQuantizer(
                onnx.load(str(parent)), bits=4, block_size=settings["block_size"],
                is_symmetric=not settings["asymmetric"], accuracy_level=settings["accuracy_level"] or None,
                quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",))
            quantizer.process()
        with reporting_full_disk(out):
            quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
        return {}
