"""Mixed precision (``-x<NAME>``: nodes kept in float) and the per-node sensitivity ranking, on the tiny random BERT."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import clirun
import numpy as np
import onnx
import pytest

from evalsuite.build import artifact_dir, build_variant
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import VariantSpec
from evalsuite.variants.float_nodes import MixedConfig, quantizable_nodes


def _write(name: str, source, base: str, nodes: list[str]) -> Path:  # noqa: ANN001
    return MixedConfig(name, source.model_id, source.weights_sha256, base, tuple(nodes), {"method": "test"}).write()


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path), load_external_data=False).graph


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # configs/mixed/ is read relative to the working directory
    return tmp_path


@pytest.fixture(scope="module")
def parent_graph(tiny_source, shared_cache: Path) -> onnx.GraphProto:  # noqa: ANN001
    return _graph(build_variant(tiny_source, VariantSpec.parse("float32"), shared_cache).path)


def test_name_round_trips() -> None:
    spec = VariantSpec.parse("qint8-7bit-xTuned1")
    assert spec.name == "qint8-7bit-xtuned1"
    assert spec.settings == {"per_channel": False, "reduce_range": True, "smooth": None, "float_nodes": "tuned1"}
    assert VariantSpec.parse(spec.name) == spec
    assert VariantSpec.parse("quint8-pc-xa-o2").name == "quint8-pc-xa-o2"
    with pytest.raises(EvalsuiteError, match="did you mean 'qint8-7bit-xa'"):
        VariantSpec.parse("qint8-xa-7bit")


def test_quantizable_nodes_are_what_the_quantizer_rewrites(tiny_source, shared_cache: Path, parent_graph) -> None:  # noqa: ANN001
    full = _graph(build_variant(tiny_source, VariantSpec.parse("qint8"), shared_cache).path)
    rewritten = [n.name[:-len("_quant")] for n in full.node if n.name.endswith("_quant")]
    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    assert sorted(names) == sorted(rewritten)
    assert len(names) == 1 + 2 * 4  # EmbedLayerNormalization, then per layer Attention and three MatMuls


def test_excluded_nodes_stay_float(in_tmp: Path, tiny_source, shared_cache: Path, parent_graph) -> None:  # noqa: ANN001
    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    matmuls = [n for n in names if n.endswith("MatMul")]
    keep = [matmuls[0], matmuls[-1], next(n for n in names if n.startswith("Attention"))]
    _write("keep3", tiny_source, "qint8-7bit", keep)
    full = Counter(n.op_type for n in _graph(build_variant(tiny_source, VariantSpec.parse("qint8-7bit"), shared_cache).path).node)
    art = build_variant(tiny_source, VariantSpec.parse("qint8-7bit-xkeep3"), shared_cache)
    mixed = _graph(art.path)
    ops = Counter(n.op_type for n in mixed.node)
    assert ops["MatMulInteger"] == full["MatMulInteger"] - 2
    assert ops["MatMul"] == full["MatMul"] + 2
    assert ops["QAttention"] == full["QAttention"] - 1 and ops["Attention"] == full["Attention"] + 1
    by_name = {n.name: n.op_type for n in mixed.node}
    assert [by_name[k] for k in keep] == ["MatMul", "MatMul", "Attention"]
    assert not any(f"{k}_quant" in by_name for k in keep)
    # the float nodes read float weights (not a dequantized copy)
    floats = {i.name for i in mixed.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert all(next(n for n in mixed.node if n.name == k).input[1] in floats for k in keep[:2])
    assert art.meta["float_nodes"] == sorted(keep)


def test_full_range_nodes_keep_8_bit_weights(in_tmp: Path, tiny_source, shared_cache: Path, parent_graph) -> None:  # noqa: ANN001
    """Under -7bit every int8 weight lies in [-64, 64]; a full-range node's weight spans the whole int8 range
    (max |w| maps to 127, by the symmetric int8 scale max|w| / 127 computed here from the Float32 weight)."""
    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    matmuls = [n for n in names if n.endswith("MatMul")]
    MixedConfig("wide", tiny_source.model_id, tiny_source.weights_sha256, "qint8-7bit", (matmuls[0],), {},
                (matmuls[1], matmuls[-1])).write()
    art = build_variant(tiny_source, VariantSpec.parse("qint8-7bit-xwide"), shared_cache)
    mixed = _graph(art.path)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in mixed.initializer}
    parent_weights = {i.name: onnx.numpy_helper.to_array(i) for i in parent_graph.initializer}
    parent_nodes = {n.name: n for n in parent_graph.node}
    int8 = {n: weights[parent_nodes[n].input[1] + "_quantized"] for n in matmuls[1:]}
    for node, q in int8.items():
        w = parent_weights[parent_nodes[node].input[1]]
        if node in (matmuls[1], matmuls[-1]):
            assert np.abs(q).max() == 127
            # onnxruntime's quantizer against this formula: two computations of w / scale, which may round a value
            # that lies on a half step either way, and only such a value.
            exact = w.astype(np.float64) / (np.abs(w).max() / 127)
            off = q.astype(np.int64) - np.round(exact).astype(np.int64)
            assert np.abs(off).max() <= 1 and (np.abs(np.abs(exact - np.trunc(exact)) - 0.5)[off != 0] < 1e-4).all()
            assert (off == 0).mean() > 0.999
        else:
            assert np.abs(q).max() <= 64
    assert {n.name: n.op_type for n in mixed.node}[matmuls[0]] == "MatMul"  # the float node is still float
    assert art.meta["float_nodes"] == [matmuls[0]] and art.meta["full_range_nodes"] == sorted([matmuls[1], matmuls[-1]])
    spec = VariantSpec.parse("qint8-7bit-xwide")
    key = spec.kind.key_extras(tiny_source, spec)
    assert key == (f"float_nodes={matmuls[0]}", f"full_range_nodes={chr(10).join(sorted([matmuls[1], matmuls[-1]]))}")


@pytest.mark.parametrize("base", ["qint8", "qint8-pc", "qint8-7bit", "qint8-pc-7bit", "quint8", "quint8-pc-7bit", "static8",
                                  "static8-pc"])
def test_every_rung_of_every_start_builds(base: str, in_tmp: Path, tiny_source, shared_cache: Path, parent_graph) -> None:  # noqa: ANN001
    """The rungs tune can put a start's nodes on: a node in float and, under -7bit, a node with 8-bit weights (per channel
    too: onnxruntime needs the override to name the channel axis). Each build's weights are checked: the float node
    reads its Float32 weight, a full-range node's int8 weight reaches 127, the others stay within 64."""
    spec = VariantSpec.parse(base)
    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    matmuls = [n for n in names if n.endswith("MatMul")]
    seven = bool(spec.settings.get("reduce_range"))
    MixedConfig("rungs", tiny_source.model_id, tiny_source.weights_sha256, base, (matmuls[0],), {},
                (matmuls[1],) if seven else ()).write()
    art = build_variant(tiny_source, VariantSpec.parse(f"{base}-xrungs"), shared_cache)
    mixed = _graph(art.path)
    parent_nodes = {n.name: n for n in parent_graph.node}
    float_weight = parent_nodes[matmuls[0]].input[1]
    readers = {i for n in mixed.node if n.op_type == "MatMul" for i in n.input}
    assert float_weight in readers  # still a float MatMul on the Float32 weight
    if seven:  # 7-bit weights span at most 128 steps (int8 [-64, 64], uint8 [0, 127]); 8-bit ones use the whole byte
        weights = {i.name: onnx.numpy_helper.to_array(i).astype(np.int64) for i in mixed.initializer}

        def span(node: str) -> int:
            w = weights[parent_nodes[node].input[1] + "_quantized"]
            return int(w.max() - w.min())

        assert span(matmuls[1]) > 128 and all(span(n) <= 128 for n in matmuls[2:])
        assert art.meta["full_range_nodes"] == [matmuls[1]]


def test_identity_follows_the_file_content(in_tmp: Path, tiny_source, shared_cache: Path, parent_graph) -> None:  # noqa: ANN001
    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    spec = VariantSpec.parse("qint8-xa")

    def key() -> Path:
        return artifact_dir(tiny_source, spec.name, shared_cache, spec.kind.key_extras(tiny_source, spec))

    _write("a", tiny_source, "qint8", names[1:3])
    first = key()
    _write("a", tiny_source, "qint8", [names[2], names[1]])  # order is not content
    assert key() == first
    _write("a", tiny_source, "qint8", names[1:4])
    assert key() != first
    plain = VariantSpec.parse("qint8")
    assert plain.kind.key_extras(tiny_source, plain) == ()  # existing variants keep their keys
    a = build_variant(tiny_source, spec, shared_cache)
    _write("a", tiny_source, "qint8", names[1:3])
    b = build_variant(tiny_source, spec, shared_cache)
    assert a.path != b.path and a.sha256 != b.sha256


@pytest.mark.parametrize(("edit", "message"), [
    ({"nodes": ["/no/such/MatMul"]}, "configs/mixed/bad.yaml: node '/no/such/MatMul' is not a node of the optimized graph of qint8"),
    ({"nodes": ["SkipLayerNorm_AddBias_0"]}, "node 'SkipLayerNorm_AddBias_0' is not a node the quantizer rewrites"),
    ({"base": "qint8-pc"}, "configs/mixed/bad.yaml: base is 'qint8-pc', but qint8-xbad takes its nodes out of 'qint8'"),
    ({"weights_sha256": "0" * 64}, "configs/mixed/bad.yaml: written for weights 000000000000..."),
    ({"nodes": []}, "configs/mixed/bad.yaml: nodes (or, under -7bit, full_range_nodes) must list at least one node name"),
    ({"full_range": ("x",)}, "configs/mixed/bad.yaml: full_range_nodes keep 8-bit weights in a -7bit base; qint8 has 8-bit"),
    ({"base": "qint8-7bit", "full_range": ("Attention_1",)}, "full_range_nodes: 'Attention_1' (Attention) has no weight input"),
])
def test_bad_config_is_one_error_naming_the_file(in_tmp: Path, tiny_source, shared_cache: Path, parent_graph,  # noqa: ANN001
                                                  edit: dict, message: str) -> None:
    import dataclasses

    names = quantizable_nodes(onnx.ModelProto(graph=parent_graph))
    cfg = MixedConfig("bad", tiny_source.model_id, tiny_source.weights_sha256, "qint8", (names[1],))
    dataclasses.replace(cfg, **{k: tuple(v) if k == "nodes" else v for k, v in edit.items()}).write()
    assert any(n.name == "SkipLayerNorm_AddBias_0" for n in parent_graph.node)
    variant = "qint8-7bit-xbad" if edit.get("base") == "qint8-7bit" else "qint8-xbad"
    with pytest.raises(EvalsuiteError, match=re.escape(message)):
        build_variant(tiny_source, VariantSpec.parse(variant), shared_cache)
    proc = clirun.invoke("convert", "--model", tiny_source.path, "--variant", variant, cwd=in_tmp,
                         env=clirun.environment(EVALSUITE_CACHE_DIR=str(shared_cache)))
    line = clirun.one_problem(proc)
    assert "configs/mixed/bad.yaml" in line and message.split(": ")[-1][:30] in line


def test_missing_file_is_an_error(in_tmp: Path, tiny_source, shared_cache: Path) -> None:  # noqa: ANN001
    with pytest.raises(EvalsuiteError, match=r"configs/mixed/nothere\.yaml: no such file"):
        build_variant(tiny_source, VariantSpec.parse("qint8-xnothere"), shared_cache)


# --- sensitivity -----------------------------------------------------------------------------------------

def _brute_force_losses(source, parent: Path, texts: list[str], names: list[str], spec: VariantSpec,  # noqa: ANN001
                        work: Path) -> dict[str, float]:
    """Each node quantized alone by the other route (every other node excluded), embedded by hand: transformers'
    tokenizer, a plain onnxruntime session, mean pooling and normalisation in numpy, one text per call."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.path)

    def embed(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        rows = []
        for text in texts:
            enc = tok(text, truncation=True, max_length=source.settings.max_seq_length, return_tensors="np")
            feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
                    "token_type_ids": np.zeros_like(enc["input_ids"], dtype=np.int64)}
            hidden = session.run(None, {k: v for k, v in feed.items() if k in wanted})[0][0].astype(np.float64)
            v = hidden.mean(axis=0)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)

    reference = embed(parent)
    out = {}
    for node in names:
        path = work / f"{len(out)}.onnx"
        local = work / f"{len(out)}-in.onnx"
        local.write_bytes(parent.read_bytes())
        quantize_dynamic(local, path, weight_type=QuantType.QInt8, per_channel=spec.settings["per_channel"],
                         reduce_range=spec.settings["reduce_range"], nodes_to_exclude=[n for n in names if n != node],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        vectors = embed(path)
        out[node] = float(1 - (vectors * reference).sum(axis=1).mean())
    return out


def test_sensitivity_agrees_with_brute_force(tmp_path: Path, tiny_source, shared_cache: Path, beir_dir: Path) -> None:  # noqa: ANN001
    from evalsuite.data.tasks import find_task
    from evalsuite.tune.sample import draw_sample
    from evalsuite.tune.sensitivity import rank_nodes

    spec = VariantSpec.parse("qint8-7bit")
    sample = draw_sample([find_task(str(beir_dir / "scifact"))], None, n_queries=3, n_documents=5)
    assert len(sample.queries) == 3 and len(sample.documents) == 5
    ranking = rank_nodes(tiny_source, spec, sample, shared_cache)
    parent = build_variant(tiny_source, VariantSpec.parse("float32"), shared_cache).path
    names = quantizable_nodes(onnx.load(str(parent), load_external_data=False))
    brute = _brute_force_losses(tiny_source, parent, [*sample.queries, *sample.documents], names, spec, tmp_path)
    assert {n.node for n in ranking.ranked} == set(names)
    for n in ranking.ranked:
        assert n.loss == pytest.approx(brute[n.node], abs=1e-6)
    assert [n.node for n in ranking.ranked] == sorted(names, key=lambda k: (-brute[k], names.index(k)))
    assert ranking.ranked[0].loss > 1e-6 and ranking.ranked[0].loss > 2 * ranking.ranked[-1].loss  # a real ranking
    # a second ranking comes from the cache: the same numbers without building anything
    import evalsuite.tune.sensitivity as sens

    calls = []
    original = sens._measure
    sens._measure = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[assignment]
    try:
        again = rank_nodes(tiny_source, spec, sample, shared_cache)
    finally:
        sens._measure = original  # type: ignore[assignment]
    assert again.ranked == ranking.ranked and calls == []
