"""Float32 at an onnxruntime transformer-optimizer level: the parent every other variant derives from.

``onnxruntime.transformers.optimizer.optimize_model`` fuses Attention, SkipLayerNormalization and BiasGelu
with the model's own head count and hidden size; ``-o<N>`` picks its ``opt_level``. The optimized graph is
checked against PyTorch like the raw export, so a fusion that does not fit a family fails the build.

The optimizer has no roberta, xlm-roberta, distilbert or mpnet entry in its ``MODEL_TYPES``: its ``bert``
optimizer (BertOnnxModel) is the one that matches all of these encoders. Per family only some fusions apply:

* bert, distilbert: Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu;
* roberta, xlm-roberta: Attention, SkipLayerNormalization, BiasGelu (position ids from a cumsum over the pad id
  keep the embedding sum out of EmbedLayerNormalization: one plain LayerNormalization stays);
* mpnet: SkipLayerNormalization, BiasGelu. Its relative position bias is a second Add before the Softmax that
  no onnxruntime attention fusion matches, so attention fusion is turned off: it fails anyway, and a future
  partial match could drop the bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.files import reporting_full_disk
from evalsuite.variants.registry import VariantKind, register

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec

# model_type -> FusionOptions flags turned off for it.
FUSION_OFF: dict[str, tuple[str, ...]] = {"mpnet": ("enable_attention",)}


@register
class Float32(VariantKind):
    name = "float32"
    dtypes = ("float32",)
    summary = "the exported model after the transformer optimizer (the baseline at -o1)"
    rank = 0

    def parent(self, spec: VariantSpec) -> VariantSpec | None:
        return None  # the raw export

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        from evalsuite.build.export import check_optimized

        model_type, heads, hidden = architecture(source.path)
        options = FusionOptions("bert")
        for flag in FUSION_OFF.get(model_type, ()):
            setattr(options, flag, False)
        # num_heads/hidden_size must be given: graphs exported by transformers 5 compute their reshape shapes at
        # run time, so the optimizer cannot detect them and then silently skips Attention fusion.
        optimized = optimize_model(str(parent), model_type="bert", opt_level=spec.opt_level, num_heads=heads,
                                   hidden_size=hidden, optimization_options=options)
        with reporting_full_disk(out):
            optimized.save_model_to_file(str(out))
        return {"optimized_max_abs_diff": check_optimized(source, out)}


def architecture(path: Path) -> tuple[str, int, int]:
    """(model_type, attention heads, hidden size) of a model folder under any family's key names.

    DistilBERT's config.json calls them ``n_heads`` and ``dim``; transformers' config classes map them.

    Example:
        >>> architecture(Path("all-MiniLM-L6-v2"))  # doctest: +SKIP
        ('bert', 12, 384)
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return (str(getattr(config, "model_type", "")), int(getattr(config, "num_attention_heads", 0) or 0),
            int(getattr(config, "hidden_size", 0) or 0))
