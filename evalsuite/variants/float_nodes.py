"""Mixed precision: an int8 build with a named set of nodes kept in float (``-x<NAME>``), shared by the int8 kinds.

Not a kind: the option and its helpers. ``qint8-7bit-xtuned1`` reads ``configs/mixed/tuned1.yaml`` (relative to the
working directory), which says which model it belongs to, the base variant (``qint8-7bit``), the node names
(names in the optimized Float32 parent graph, the graph that is quantized) and how they were chosen:

    model: sentence-transformers/all-MiniLM-L6-v2
    weights_sha256: 53aa5117...
    base: qint8-7bit
    nodes:
    - /model/encoder/layer.0/output/dense/MatMul
    chosen_by: {method: sensitivity, ...}

A ``-7bit`` base may also list ``full_range_nodes``: nodes that stay int8 but whose weights keep all 8 bits
(onnxruntime's per-tensor ``reduce_range`` override). They cost no speed on a VNNI CPU, where 7-bit weights buy
nothing; on an AVX2 CPU without VNNI their u8s8 products may saturate again, which is what 7 bits avoid.

The node sets (sorted, one name per line) are part of the artifact's cache key, so editing the file rebuilds the
variant and every result of it. onnxruntime silently ignores a ``nodes_to_exclude`` name it does not know, so a
name that is not a quantizable node of the parent graph is an error naming the file and the name.

Example:
    >>> spec = VariantSpec.parse("qint8-7bit-xtuned1")  # doctest: +SKIP
    >>> mixed_config(spec).nodes  # doctest: +SKIP
    ('/model/encoder/layer.0/output/dense/MatMul',)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evalsuite.config import load_yaml_mapping, suggest
from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_text
from evalsuite.variants.registry import Option

if TYPE_CHECKING:
    import onnx

    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec

FLOAT_NODES = Option("float_nodes", "float nodes", "mixed precision: keep the nodes listed in configs/mixed/<NAME>.yaml in float "
                     "(under -7bit, its full_range_nodes keep 8-bit weights)",
                     prefix="x", default=None)
MIXED_DIR = Path("configs") / "mixed"
_KEYS = ("model", "weights_sha256", "base", "nodes", "full_range_nodes", "chosen_by")
# Op types onnxruntime's dynamic (IntegerOps) quantizer rewrites, and which input must be a constant for it to do so.
_WEIGHT_INPUT = {"MatMul": 1, "Gather": 0, "Conv": 1}
_ALWAYS = {"EmbedLayerNormalization", "LSTM"}


@dataclass(frozen=True)
class MixedConfig:
    """One ``configs/mixed/<name>.yaml``: the nodes of ``base`` kept in float (and, for a ``-7bit`` base, the nodes
    whose weights keep 8 bits), for one model's weights."""

    name: str
    model: str
    weights_sha256: str
    base: str
    nodes: tuple[str, ...]
    chosen_by: dict[str, Any] = field(default_factory=dict)
    full_range: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return config_path(self.name)

    def key(self) -> tuple[str, ...]:
        """The node sets as the cache key sees them: sorted names, one per line (order and comments do not count)."""
        key = (f"float_nodes={chr(10).join(sorted(self.nodes))}",)
        return key + ((f"full_range_nodes={chr(10).join(sorted(self.full_range))}",) if self.full_range else ())

    def to_dict(self) -> dict[str, Any]:
        doc = {"model": self.model, "weights_sha256": self.weights_sha256, "base": self.base, "nodes": list(self.nodes)}
        return doc | ({"full_range_nodes": list(self.full_range)} if self.full_range else {}) | {"chosen_by": self.chosen_by}

    def write(self, root: Path | None = None) -> Path:
        """Write the file (atomically) under ``root`` (default: the working directory); returns its path."""
        path = (root or Path.cwd()) / MIXED_DIR / f"{self.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, width=1000))
        return path


def config_path(name: str) -> Path:
    return Path.cwd() / MIXED_DIR / f"{name}.yaml"


def load_config(name: str) -> MixedConfig:
    """Read ``configs/mixed/<name>.yaml``; a missing file or a bad key is one error naming the file."""
    path = config_path(name)
    if not path.is_file():
        raise EvalsuiteError(f"{path}: no such file; -x{name} names configs/mixed/{name}.yaml in the working directory "
                             f"(written by evalsuite tune)")
    doc = load_yaml_mapping(path, _KEYS, "mixed-precision config", required=("base",))
    nodes, full_range = (_names(path, doc, key) for key in ("nodes", "full_range_nodes"))
    if not nodes and not full_range:
        raise EvalsuiteError(f"{path}: nodes (or, under -7bit, full_range_nodes) must list at least one node name")
    listed = nodes + full_range
    twice = next((n for i, n in enumerate(listed) if n in listed[:i]), None)
    if twice is not None:
        raise EvalsuiteError(f"{path}: node {twice!r} is listed twice")
    for key in ("model", "weights_sha256", "base"):
        if key in doc and not isinstance(doc[key], str):
            raise EvalsuiteError(f"{path}: {key} must be a string, not {doc[key]!r}")
    chosen = doc.get("chosen_by") or {}
    if not isinstance(chosen, dict):
        raise EvalsuiteError(f"{path}: chosen_by must be a mapping")
    return MixedConfig(name, doc.get("model", ""), doc.get("weights_sha256", ""), doc["base"], tuple(nodes), chosen,
                       tuple(full_range))


def _names(path: Path, doc: dict[str, Any], key: str) -> list[str]:
    names = doc.get(key) or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise EvalsuiteError(f"{path}: {key} must be a list of node names")
    return names


def base_of(spec: VariantSpec) -> VariantSpec:
    """The variant without its float-node set: what the nodes are taken out of."""
    from evalsuite.variants.spec import VariantSpec

    return VariantSpec(spec.dtype, {**dict(spec.options), FLOAT_NODES.name: None}, spec.opt_level)


def with_float_nodes(spec: VariantSpec, name: str) -> VariantSpec:
    from evalsuite.variants.spec import VariantSpec

    return VariantSpec(spec.dtype, {**dict(spec.options), FLOAT_NODES.name: name}, spec.opt_level)


def mixed_config(source: ModelSource, spec: VariantSpec) -> MixedConfig | None:
    """The float-node set of ``spec`` (None without ``-x<NAME>``), checked against the model and the base variant."""
    name = spec.settings.get(FLOAT_NODES.name)
    if not name:
        return None
    cfg = load_config(name)
    base = base_of(spec).name
    try:
        from evalsuite.variants.spec import VariantSpec

        file_base = VariantSpec.parse(cfg.base).name
    except EvalsuiteError as exc:
        raise EvalsuiteError(f"{cfg.path}: base: {exc}") from None
    if file_base != base:
        raise EvalsuiteError(f"{cfg.path}: base is {cfg.base!r}, but {spec.name} takes its nodes out of {base!r}")
    if cfg.full_range and not spec.settings.get("reduce_range"):
        raise EvalsuiteError(f"{cfg.path}: full_range_nodes keep 8-bit weights in a -7bit base; {base} has 8-bit weights already")
    if cfg.weights_sha256 and cfg.weights_sha256 != source.weights_sha256:
        raise EvalsuiteError(f"{cfg.path}: written for weights {cfg.weights_sha256[:12]}... ({cfg.model or 'another model'}), "
                             f"not {source.model_id} ({source.weights_sha256[:12]}...)")
    return cfg


def key_extras(source: ModelSource, spec: VariantSpec) -> tuple[str, ...]:
    """The node set as part of the cache key (empty without ``-x<NAME>``, so existing keys stay the same)."""
    cfg = mixed_config(source, spec)
    return () if cfg is None else cfg.key()


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes onnxruntime's dynamic quantizer rewrites, in graph order (the names ``nodes_to_exclude`` takes).

    MatMul/Conv with a constant weight (``MatMulConstBOnly``), Gather of a constant table, Attention without
    ``qkv_hidden_sizes``, EmbedLayerNormalization. tests/test_mixed.py checks this against the ``*_quant`` nodes of
    a real quantization.
    """
    constants = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        op = node.op_type
        if op in _WEIGHT_INPUT:
            index = _WEIGHT_INPUT[op]
            keep = len(node.input) > index and node.input[index] in constants
        elif op == "Attention":
            keep = not any(a.name == "qkv_hidden_sizes" for a in node.attribute)
        else:
            keep = op in _ALWAYS
        if keep and node.name:
            out.append(node.name)
    return out


def has_weight(op_type: str) -> bool:
    """Whether a quantizable node of this op type has a constant weight input (so it can keep 8-bit weights)."""
    return op_type in _WEIGHT_INPUT


def weight_inputs(model: onnx.ModelProto, names: Sequence[str]) -> dict[str, str]:
    """The constant weight input of each named node (what onnxruntime's per-tensor overrides are keyed by)."""
    by_name = {n.name: n for n in model.graph.node}
    return {name: by_name[name].input[_WEIGHT_INPUT[by_name[name].op_type]] for name in names}


def check_nodes(cfg: MixedConfig, quantizable: list[str], all_names: set[str], model: onnx.ModelProto | None = None) -> None:
    """Every listed node must be a quantizable node of the parent graph (onnxruntime would ignore it silently), and a
    full-range node one with a weight input (an override names a weight)."""
    if model is not None:
        ops = {n.name: n.op_type for n in model.graph.node}
        for name in cfg.full_range:
            if name in ops and ops[name] not in _WEIGHT_INPUT:
                raise EvalsuiteError(f"{cfg.path}: full_range_nodes: {name!r} ({ops[name]}) has no weight input; only "
                                     f"{', '.join(_WEIGHT_INPUT)} nodes have weights to keep in 8 bits")
    for name in cfg.nodes + cfg.full_range:
        if name not in quantizable:
            what = "is not a node the quantizer rewrites" if name in all_names else "is not a node of the optimized graph"
            raise EvalsuiteError(f"{cfg.path}: node {name!r} {what} of {cfg.base} ({len(quantizable)} quantizable nodes; "
                                 f"evalsuite sensitivity --variant {cfg.base} lists them){suggest(name, quantizable)}")
