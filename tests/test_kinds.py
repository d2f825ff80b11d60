"""Static int8 and int4 weight-only kinds on a tiny random BERT: names, builds, graphs, calibration identity,
batch independence, and the quantized numbers checked against independent numpy computations."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from readme_text import REPO, md_rows, readme_section

from evalsuite.build import build_variant
from evalsuite.build.artifacts import artifact_dir
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import BASELINE, VariantSpec, expand, named_sets
from evalsuite.variants import _calibration

STATIC = ("static8", "static8-pc", "static8-pc-entropy", "static8-pc-pct", "static8-pc-qop")
INT4 = ("int4", "int4-b16", "int4-asym", "int4-b64-asym-acc4")
WORDS = "protein heart disease diet sugar insulin stock bond market tumor growth mouse study cancer bone".split()


def _texts(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


def _ops(path: Path) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in _graph(path).node)


def _weight_matmuls(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    constants = {i.name for i in graph.initializer}
    return [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", [*STATIC, *INT4, "static8-pct-qop", "static8-pc-pct-qop-calmine", "int4-b128-acc1", "static8-pc-o0", "int4-b16-o99"])
def test_names_round_trip(name: str) -> None:
    spec = VariantSpec.parse(name)
    assert spec.name == name
    assert VariantSpec(spec.dtype, spec.settings, spec.opt_level) == spec


def test_settings_read_from_names() -> None:
    assert VariantSpec.parse("static8-pc-pct-qop").settings == {
        "per_channel": True, "calibrate_method": "percentile", "quant_format": "qoperator", "calibration": "default",
        "smooth": None, "float_nodes": None}
    assert VariantSpec.parse("static8").settings == {"per_channel": False, "calibrate_method": "minmax",
                                                     "quant_format": "qdq", "calibration": "default", "smooth": None,
                                                     "float_nodes": None}
    assert VariantSpec.parse("static8-pc-pct-xmine").settings["float_nodes"] == "mine"
    assert VariantSpec.parse("static8-caldefault").name == "static8"
    assert VariantSpec.parse("static8-pc-calmine2").settings["calibration"] == "mine2"
    assert VariantSpec.parse("int4-b16-asym-acc4").settings == {"block_size": 16, "asymmetric": True, "accuracy_level": 4}
    assert VariantSpec.parse("int4").settings == {"block_size": 32, "asymmetric": False, "accuracy_level": 0}
    assert VariantSpec.parse("int4-b32").name == "int4"  # the default block size may be named; it is left out


@pytest.mark.parametrize(("text", "message"), [
    ("static8-7bit", "-7bit applies to qint8/quint8 only"),
    ("int4-pc", "-pc applies to qint8/quint8/static8 only"),
    ("qint8-pct", "-pct applies to static8 only"),
    ("static8-pct-pc", "did you mean 'static8-pc-pct'"),
    ("static8-entropy-pct", "-entropy and -pct are alternatives; give one"),
    ("static8-pct-pc-entropy", "cannot parse"),
    ("int4-asym-b16", "did you mean 'int4-b16-asym'"),
    ("static8-calmine-pc", "did you mean 'static8-pc-calmine'"),
    ("static8-calA_b", "cannot parse"),
    ("qint8-calmine", "-calmine applies to static8 only"),
])
def test_bad_names(text: str, message: str) -> None:
    with pytest.raises(EvalsuiteError, match=message):
        VariantSpec.parse(text)


def test_named_sets_and_all() -> None:
    sets = named_sets()
    assert [s.name for s in expand(["static"])] == list(sets["static"])
    assert [s.name for s in expand(["int4"])] == list(sets["int4"])
    assert not any(n.startswith(("static8", "int4")) for n in sets["all"])  # `all` stays the float/dynamic grid


# ------------------------------------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def baseline(tiny_source, shared_cache):  # noqa: ANN001, ANN201
    art = build_variant(tiny_source, BASELINE, shared_cache)
    texts = _texts(40)
    return art, texts, OnnxEncoder(art, tiny_source, BatchPolicy(8, 8, "given"), threads=1).embed(texts)


@pytest.mark.parametrize("name", [*STATIC, *INT4])
def test_each_kind_builds_and_encodes_close_to_float32(name: str, tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    _, texts, float32 = baseline
    art = build_variant(tiny_source, VariantSpec.parse(name), shared_cache)
    got = OnnxEncoder(art, tiny_source, BatchPolicy(8, 8, "given"), threads=1).embed(texts)
    assert got.shape == float32.shape and np.isfinite(got).all()
    assert not np.array_equal(got, float32)  # something was quantized
    assert _cos(got, float32).min() > 0.95


def test_static_qdq_quantizes_every_weight_matmul_and_keeps_side_inputs_float(tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    parent = _graph(baseline[0].path)
    matmuls = _weight_matmuls(parent)
    art = build_variant(tiny_source, VariantSpec.parse("static8-pc"), shared_cache)
    graph = _graph(art.path)
    ops = collections.Counter(n.op_type for n in graph.node)
    constants = {i.name for i in graph.initializer}
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants]
    assert len(matmuls) == 6 == ops["MatMul"]  # 2 layers x (attention output, FFN in, FFN out)
    assert len(weight_dq) == len(matmuls)
    assert ops["QuantizeLinear"] == len({m.input[0] for m in matmuls})  # one per distinct activation
    assert ops["DequantizeLinear"] == len(weight_dq) + ops["QuantizeLinear"]
    # Every dequantized activation feeds MatMuls only: the residual stream into SkipLayerNormalization stays float.
    activation_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in constants}
    readers = {n.op_type for n in graph.node for i in n.input if i in activation_dq}
    assert readers == {"MatMul"}
    assert art.meta["float_side_inputs"] == 2  # the FFN input LayerNorm output of each layer is also a residual
    # Per-channel: one weight scale per output column.
    scale = {i.name: numpy_helper.to_array(i) for i in graph.initializer}[weight_dq[0].input[1]]
    assert scale.shape == (numpy_helper.to_array(next(i for i in parent.initializer if i.name == matmuls[0].input[1])).shape[1],)


def test_static_keeps_the_mixed_config_nodes_in_float(tiny_source, shared_cache, baseline, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """static8-pc-x<NAME>: the listed MatMul reads its float weight and its float input; the others stay quantized."""
    from evalsuite.variants.float_nodes import MixedConfig

    monkeypatch.chdir(tmp_path)
    matmuls = _weight_matmuls(_graph(baseline[0].path))
    keep = matmuls[-1].name
    MixedConfig("last", tiny_source.model_id, tiny_source.weights_sha256, "static8-pc", (keep,)).write()
    art = build_variant(tiny_source, VariantSpec.parse("static8-pc-xlast"), shared_cache)
    graph = _graph(art.path)
    constants = {i.name for i in graph.initializer}
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    kept = next(n for n in graph.node if n.name == keep)
    assert kept.op_type == "MatMul" and kept.input[1] in constants and not set(kept.input) & dq
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in constants]
    assert len(weight_dq) == len(matmuls) - 1
    assert art.meta["float_nodes"] == [keep]
    plain = build_variant(tiny_source, VariantSpec.parse("static8-pc"), shared_cache)
    assert art.sha256 != plain.sha256
    MixedConfig("bad", tiny_source.model_id, tiny_source.weights_sha256, "static8-pc", ("Attention_0",)).write()
    with pytest.raises(EvalsuiteError, match="configs/mixed/bad.yaml: node 'Attention_0' is not a node the quantizer rewrites"):
        build_variant(tiny_source, VariantSpec.parse("static8-pc-xbad"), shared_cache)


def test_static_qoperator_uses_qlinearmatmul(tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    matmuls = _weight_matmuls(_graph(baseline[0].path))
    ops = _ops(build_variant(tiny_source, VariantSpec.parse("static8-pc-qop"), shared_cache).path)
    assert ops["QLinearMatMul"] == len(matmuls) and ops["MatMul"] == 0


def test_static_minmax_scales_are_the_calibration_ranges(tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    """The activation scale of each QuantizeLinear is (max(hi, 0) - min(lo, 0)) / 255 of that tensor over the
    default calibration texts, run one by one through the float model with onnxruntime (computed here)."""
    import onnxruntime as ort

    from evalsuite.encode.tokenizer import TextTokenizer

    art = build_variant(tiny_source, VariantSpec.parse("static8"), shared_cache)
    graph = _graph(art.path)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    scales = {n.input[0]: float(values[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}
    model = onnx.load(str(baseline[0].path))
    for name in scales:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = Path(_calibration.DEFAULT_FILE).read_text(encoding="utf-8").splitlines()
    tok = TextTokenizer(tiny_source.path, tiny_source.settings.max_seq_length)
    lo = dict.fromkeys(scales, np.inf)
    hi = dict.fromkeys(scales, -np.inf)
    tokenized = tok(texts)
    for ids in (tokenized.row(i).astype(np.int64) for i in range(len(tokenized))):
        feed = {"input_ids": ids[None], "attention_mask": np.ones_like(ids[None]), "token_type_ids": np.zeros_like(ids[None])}
        outs = session.run(list(scales), {i.name: feed[i.name] for i in session.get_inputs()})
        for name, out in zip(scales, outs, strict=True):
            lo[name], hi[name] = min(lo[name], float(out.min())), max(hi[name], float(out.max()))
    for name, scale in scales.items():
        assert scale == pytest.approx((max(hi[name], 0) - min(lo[name], 0)) / 255, rel=1e-5)


def test_int4_replaces_every_weight_matmul(tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    matmuls = _weight_matmuls(_graph(baseline[0].path))
    for name, level in (("int4", None), ("int4-b64-asym-acc4", 4)):
        graph = _graph(build_variant(tiny_source, VariantSpec.parse(name), shared_cache).path)
        nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
        assert len(nbits) == len(matmuls) and not any(n.op_type == "MatMul" for n in graph.node)
        attrs = {a.name: a.i for a in nbits[0].attribute}
        assert attrs["bits"] == 4 and attrs["block_size"] == VariantSpec.parse(name).settings["block_size"]
        assert attrs.get("accuracy_level") == level


@pytest.mark.parametrize("name", ["int4", "int4-b16-asym"])
def test_int4_weights_are_numpy_blockwise_quantization(name: str, tiny_source, shared_cache, baseline) -> None:  # noqa: ANN001
    """Unpack each MatMulNBits weight and compare it to the float weight on each block's own numpy grid
    (symmetric: step max |w| / 8, zero point 8; asymmetric: step (max - min) / 15 with 0 inside the range)."""
    spec = VariantSpec.parse(name)
    block, asym = spec.settings["block_size"], spec.settings["asymmetric"]
    parent = _graph(baseline[0].path)
    floats = {i.name: numpy_helper.to_array(i) for i in parent.initializer}
    by_name = {m.name: floats[m.input[1]] for m in _weight_matmuls(parent)}
    graph = _graph(build_variant(tiny_source, spec, shared_cache).path)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    checked = 0
    for node in (n for n in graph.node if n.op_type == "MatMulNBits"):
        w = by_name[node.name.removesuffix("_Q4")]  # (K, N)
        k, n = w.shape
        blocks = -(-k // block)
        packed = values[node.input[1]].reshape(n, blocks, block // 2)
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, blocks * block)[:, :k].astype(np.float64)
        scale = values[node.input[2]].reshape(n, blocks).astype(np.float64)
        if asym:
            zp_packed = values[node.input[3]].reshape(n, -1)
            zp = np.stack([zp_packed & 0x0F, zp_packed >> 4], axis=-1).reshape(n, -1)[:, :blocks].astype(np.float64)
        else:
            zp = np.full((n, blocks), 8.0)
        deq = ((q.reshape(n, blocks, block) - zp[..., None]) * scale[..., None]).reshape(n, -1)[:, :k].T
        wb = np.pad(w.T, ((0, 0), (0, blocks * block - k))).reshape(n, blocks, block).astype(np.float64)
        if asym:
            step = (np.maximum(wb.max(-1), 0) - np.minimum(wb.min(-1), 0)) / 15
        else:
            step = np.abs(wb).max(-1) / 8
        assert np.allclose(np.abs(scale), step, rtol=1e-5)  # the grid is the numpy one
        err = np.pad(np.abs(deq - w).T, ((0, 0), (0, blocks * block - k))).reshape(n, blocks, block) / step[..., None]
        # Round to nearest: within one step everywhere (the symmetric grid's one-sided end clips), about a quarter
        # step on average (uniform rounding error).
        assert err.max() <= 1 + 1e-6 and 0.15 < err.mean() < 0.35
        checked += 1
    assert checked == 6


# ------------------------------------------------------------------------------------------- batch independence


@pytest.mark.parametrize("name", ["static8-pc", "static8-pc-pct", "static8-pc-qop", "int4", "int4-b16-asym-acc4"])
def test_embeddings_do_not_depend_on_batch_neighbours(name: str, tiny_source, shared_cache) -> None:  # noqa: ANN001
    """Each text alone vs in a batch of 32 of other lengths (padded to the longest): max abs diff <= 1e-6."""
    art = build_variant(tiny_source, VariantSpec.parse(name), shared_cache)
    texts = _texts(32, seed=7)
    alone = OnnxEncoder(art, tiny_source, BatchPolicy(1, 1, "given"), threads=1).embed(texts)
    batched = OnnxEncoder(art, tiny_source, BatchPolicy(32, 32, "given"), threads=1).embed(texts)
    assert np.abs(alone - batched).max() <= 1e-6


def test_the_batch_check_sees_dynamic_quantization_move(tiny_source, shared_cache) -> None:  # noqa: ANN001
    """The same check on dynamic int8, whose activation scales are per batch, does see a difference."""
    art = build_variant(tiny_source, VariantSpec.parse("qint8"), shared_cache)
    texts = _texts(32, seed=7)
    alone = OnnxEncoder(art, tiny_source, BatchPolicy(1, 1, "given"), threads=1).embed(texts)
    batched = OnnxEncoder(art, tiny_source, BatchPolicy(32, 32, "given"), threads=1).embed(texts)
    assert np.abs(alone - batched).max() > 1e-6


# -------------------------------------------------------------------------------------------- calibration data


def test_calibration_texts_are_part_of_the_identity(tiny_source, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    spec = VariantSpec.parse("static8-pc")
    before = artifact_dir(tiny_source, spec.name, tmp_path, spec.kind.key_extras(tiny_source, spec))
    default = _calibration.load_calibration(None)
    assert default.count == 256 and default.source == "default"
    for variant in (list(reversed(default.texts)), [*default.texts[:-1], default.texts[-1] + "."], default.texts[:128]):
        other = tmp_path / "other.txt"
        other.write_text("\n".join(variant) + "\n", encoding="utf-8")
        monkeypatch.setattr(_calibration, "DEFAULT_FILE", other)
        after = artifact_dir(tiny_source, spec.name, tmp_path, spec.kind.key_extras(tiny_source, spec))
        assert after != before  # order, content and count each change the cache key
    int4 = VariantSpec.parse("int4")
    assert int4.kind.key_extras(tiny_source, int4) == ()  # int4 reads no calibration


@pytest.mark.parametrize(("content", "message"), [
    (b"one text\n\nanother\n", r"x\.txt:2: empty line"),
    (b"good\n\xff\xfe bad\n", r"x\.txt:2: not UTF-8"),
    (b"", r"x\.txt: no calibration texts"),
])
def test_bad_calibration_files(content: bytes, message: str, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    (tmp_path / "x.txt").write_bytes(content)
    monkeypatch.setattr(_calibration, "DEFAULT_FILE", tmp_path / "x.txt")
    with pytest.raises(EvalsuiteError, match=message):
        _calibration.load_calibration(None)


def test_a_user_calibration_file_builds_its_own_variant(tiny_source, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """-cal<NAME> reads configs/calibration/<NAME>.txt of the working directory; its texts are in the cache key,
    the built file and the artifact's meta.json, and changing the file changes all three."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "configs" / "calibration"
    folder.mkdir(parents=True)
    texts = _texts(20, seed=3)
    (folder / "mine.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    spec = VariantSpec.parse("static8-pc-calmine")
    cache = tmp_path / "cache"
    first = build_variant(tiny_source, spec, cache)
    default = build_variant(tiny_source, VariantSpec.parse("static8-pc"), cache)
    digest = _calibration.Calibration("mine", folder / "mine.txt", tuple(texts)).sha256
    assert first.meta["calibration"]["source"] == "mine" and first.meta["calibration"]["count"] == 20
    assert first.meta["calibration"]["sha256"] == digest
    assert default.meta["calibration"]["source"] == "default" and default.meta["calibration"]["count"] == 256
    assert first.sha256 != default.sha256 and first.path.parent != default.path.parent
    (folder / "mine.txt").write_text("\n".join(_texts(20, seed=4)) + "\n", encoding="utf-8")
    second = build_variant(tiny_source, spec, cache)
    assert second.path.parent != first.path.parent and second.sha256 != first.sha256
    assert second.meta["calibration"]["sha256"] != digest
    assert build_variant(tiny_source, spec, cache).path == second.path  # and it is reused


def test_a_missing_calibration_file_names_the_path(tiny_source, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    spec = VariantSpec.parse("static8-calnothere")
    with pytest.raises(EvalsuiteError, match=r"configs/calibration/nothere\.txt: cannot read calibration texts"):
        build_variant(tiny_source, spec, tmp_path / "cache")


def test_readme_batch_independence_table_is_the_committed_benchmark() -> None:
    """README's static8/int4 table, cell for cell, from results/bench/static_batch_independence.json."""
    import json

    rows = [r for r in md_rows(readme_section("## Static int8 and int4 weight-only")) if r[0].startswith("`")]
    bench = json.loads((REPO / "results" / "bench" / "static_batch_independence.json").read_text())
    expected = [[f"`{r['variant']}`", f"{r['max_abs_diff']:.2g}", f"{r['texts_over_1e-6']} / {r['texts']}",
                 f"{r['mean_cos_float32']:.5f}", f"{r['min_cos_float32']:.5f}"] for r in bench["rows"]]
    assert rows == expected


def test_readme_kinds_quality_table_is_the_report_of_results_kinds(monkeypatch, capsys) -> None:  # noqa: ANN001
    """README's static8/int4 NDCG@10 table, cell for cell, as `evalsuite report` prints it from results/kinds/, and
    its per-task deltas from the committed per-query scores."""
    import json

    from test_gate import run_cli

    section = readme_section("- **NDCG@10 on SciFact and NFCorpus**")
    code, printed, err = run_cli(monkeypatch, capsys, "report", "--format", "md", "--results-dir", str(REPO / "results" / "kinds"),
                                 "--model", "sentence-transformers/all-MiniLM-L6-v2")
    assert code == 0, err
    readme, report = md_rows(section), md_rows(printed)
    columns = [report[0].index(c) for c in readme[0]]
    assert [[row[i] for i in columns] for row in report if row[0] in {r[0] for r in readme[2:]}] == readme[2:]
    folder = REPO / "results" / "kinds" / "sentence-transformers__all-MiniLM-L6-v2"

    def mean(variant: str, task: str) -> float:
        scores = json.loads((folder / task / f"{variant}.json").read_text())["per_query_ndcg_at_10"]
        return sum(scores.values()) / len(scores)

    deltas = {v: [mean(v, t) - mean("float32", t) for t in ("SciFact", "NFCorpus")] for v in ("static8-pc-pct", "int4-b16")}
    prose = " ".join(section.split())
    assert (f"static8-pc-pct moves SciFact by {deltas['static8-pc-pct'][0]:+.4f} and NFCorpus by {deltas['static8-pc-pct'][1]:+.4f}; "
            f"int4-b16 by {deltas['int4-b16'][0]:+.4f} and {deltas['int4-b16'][1]:+.4f}") in prose
