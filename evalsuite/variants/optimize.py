"""Float32 at an onnxruntime transformer-optimizer level: the parent every other variant derives from.

``onnxruntime.transformers.optimizer.optimize_model`` fuses Attention, SkipLayerNormalization and BiasGelu
with the model's own head count and hidden size; ``-o<N>`` picks its ``opt_level``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
from evalsuite.variants.registry import VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec


@register
class Float32(VariantKind):
    name = "float32"
    dtypes = ("float32",)
    summary = "the exported model after the transformer optimizer (the baseline at -o1)"
    rank = 0

    def parent(self, spec: VariantSpec) -> VariantSpec | None:
        return None  # the raw export

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        from onnxruntime.transformers.optimizer import optimize_model

        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
        optimized = optimize_model(
            str(parent), model_type="bert", opt_level=spec.opt_level,
            num_heads=int(config.get("num_attention_heads", 0)), hidden_size=int(config.get("hidden_size", 0)),
        )
        with reporting_full_disk(out):
            optimized.save_model_to_file(str(out))
        return {}
