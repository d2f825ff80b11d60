"""SmoothQuant (``-sq<ALPHA>``) on the tiny random BERT: an exact float rewrite, balanced ranges, and a build like any other.

The rewrite is checked against the unsmoothed graph (embeddings equal within float rounding: two computations), and
the migration against its definition with ranges measured here independently: at alpha 0.5 each smoothed MatMul's
input channel peaks at the same value as its weight row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from evalsuite.build import build_variant
from evalsuite.encode import OnnxEncoder
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import BASELINE, VariantSpec, smooth
from evalsuite.variants._calibration import (
    Calibration,
    calibration_feeds,
    load_calibration,
)

TEXTS = ["protein intake of women", "insulin resistance and sugar", "stock market risk and bond yields",
         "a gene that codes for a kinase in mouse liver cells, measured in a long trial", "sleep"]


def test_names_and_alpha() -> None:
    spec = VariantSpec.parse("qint8-pc-7bit-sq50")
    assert spec.name == "qint8-pc-7bit-sq50" and smooth.alpha_of(spec) == 0.5
    assert VariantSpec.parse("static8-pc-sq80").name == "static8-pc-sq80"
    assert smooth.alpha_of(VariantSpec.parse("qint8")) is None
    with pytest.raises(EvalsuiteError, match="-sq150: alpha is given in hundredths, 0 to 100"):
        VariantSpec.parse("qint8-sq150")
    with pytest.raises(EvalsuiteError):
        VariantSpec.parse("float16-sq50")  # a float build has nothing to smooth


@pytest.fixture(scope="module")
def smoothed(tiny_source, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    parent = build_variant(tiny_source, BASELINE, shared_cache).path
    out = tmp_path_factory.mktemp("smooth") / "smoothed.onnx"
    info = smooth.smooth(tiny_source, VariantSpec.parse("qint8-sq50"), parent, out)
    assert info == {"alpha": 0.5, "matmuls": len(smooth.weighted_matmuls(onnx.load(str(parent))))} and info["matmuls"] > 0
    return parent, out


def test_the_rewrite_is_exact_in_float(smoothed, tiny_source) -> None:
    parent, out = smoothed
    runs = []
    for path in (parent, out):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = calibration_feeds(tiny_source, Calibration("test", Path("test"), tuple(TEXTS)), names)
        runs.append(np.concatenate([session.run(None, f)[0][0] for f in feeds]))  # every token's state
    assert np.abs(runs[0] - runs[1]).max() < 1e-4 * np.abs(runs[0]).max()


def test_at_alpha_half_activations_and_weights_peak_alike(smoothed, tiny_source) -> None:
    """For each smoothed MatMul, the peak of every input channel over the calibration texts, measured here by running
    the smoothed graph, equals the peak of that channel's weight row (the definition of s at alpha 0.5)."""
    _, out = smoothed
    model = onnx.load(str(out))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    targets = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[0].endswith("/smoothed_input")]
    assert targets and len(targets) == len([n for n in model.graph.node if n.name.endswith("/smooth")])
    for name in {n.input[0] for n in targets}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    index = {o.name: i for i, o in enumerate(session.get_outputs())}
    feeds = calibration_feeds(tiny_source, load_calibration(None), [i.name for i in session.get_inputs()])
    peaks: dict[str, np.ndarray] = {}
    for feed in feeds:
        outputs = session.run(None, feed)
        for n in targets:
            x = np.abs(outputs[index[n.input[0]]]).reshape(-1, outputs[index[n.input[0]]].shape[-1]).max(axis=0)
            peaks[n.input[0]] = np.maximum(peaks.get(n.input[0], x), x)
    for n in targets:
        w_peak = np.abs(weights[n.input[1]]).max(axis=1)
        assert np.allclose(peaks[n.input[0]], w_peak, rtol=1e-3), n.name


def test_a_smoothed_build_is_a_build_like_any_other(tiny_source, shared_cache: Path) -> None:
    builds = {v: build_variant(tiny_source, VariantSpec.parse(v), shared_cache) for v in ("qint8", "qint8-sq50", "qint8-sq80")}
    assert len({b.sha256 for b in builds.values()}) == 3 and len({b.path.parent for b in builds.values()}) == 3
    assert builds["qint8-sq50"].meta["smooth"]["alpha"] == 0.5
    assert not list(builds["qint8-sq50"].path.parent.glob("smoothed*"))  # the float copy is not kept in the cache
    graph = onnx.load(str(builds["qint8-sq50"].path)).graph
    smooth_nodes = [n for n in graph.node if n.name.endswith("/smooth")]
    assert smooth_nodes and all(n.op_type == "Mul" for n in smooth_nodes)
    quantized_inputs = {i for n in graph.node if n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul")
                        for i in n.input}
    assert {n.output[0] for n in smooth_nodes} & quantized_inputs  # the int8 MatMuls read the smoothed activations
    texts = [t * 3 for t in TEXTS]
    vectors = OnnxEncoder(builds["qint8-sq50"], tiny_source, cache_dir=None, threads=1).embed(texts)
    assert vectors.shape == (len(texts), 32) and np.isfinite(vectors).all()
    static = build_variant(tiny_source, VariantSpec.parse("static8-pc-sq50"), shared_cache)
    assert static.meta["smooth"]["alpha"] == 0.5
