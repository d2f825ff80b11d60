"""Model -> ONNX per variant: every seed variant builds and encodes close to Float32; the files are what their
names say (float16 weights, 8- or 7-bit integer weights, per-channel scales); export validation and the cache work."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS

from evalsuite.build import artifacts as convert
from evalsuite.build import export as exporter
from evalsuite.build import Artifact, artifact_dir, build_variant, check_onnx
from evalsuite.encode import BatchPolicy, OnnxEncoder, make_session
from evalsuite.errors import EvalsuiteError
from evalsuite.models import ModelSource
from evalsuite.files import sha256_file
from evalsuite.variants import BASELINE, VariantKind, VariantSpec, kinds, named_sets

NAMED_SETS = named_sets()
SEED = NAMED_SETS["seed"]
QUANTIZED_SEED = [n for n in SEED if VariantSpec.parse(n).kind.name == "dynamic"]
_rng = random.Random(7)
PROBE = list(dict.fromkeys(" ".join(_rng.sample(WORDS, _rng.randint(2, 30))) for _ in range(40)))


def embed(artifact: Artifact, source: ModelSource, texts: list[str]) -> np.ndarray:
    return OnnxEncoder(artifact, source, BatchPolicy(batch_size=8, order="given"), threads=1).embed(texts)


def build(source: ModelSource, name: str, cache: Path) -> Artifact:
    return build_variant(source, VariantSpec.parse(name), cache)


@pytest.fixture(scope="session")
def seed_artifacts(tiny_source: ModelSource, shared_cache: Path) -> dict[str, Artifact]:
    return {name: build(tiny_source, name, shared_cache) for name in SEED}


@pytest.fixture(scope="session")
def float32_probe(seed_artifacts: dict[str, Artifact], tiny_source: ModelSource) -> np.ndarray:
    return embed(seed_artifacts["float32"], tiny_source, PROBE)


@pytest.fixture(scope="session")
def torch_probe(tiny_model: Path) -> np.ndarray:
    """The probe embedded by sentence-transformers in PyTorch: the reference the Float32 file must reproduce."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model), device="cpu").encode(PROBE, batch_size=8, convert_to_numpy=True)


def weight_inputs(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op, integer weight, weight scale) of every quantized matrix product in the graph."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            weight = inits[node.input[1]]
            scale = next(inits[n] for n in inits if n == node.input[1].replace("_quantized", "_scale"))
            out.append((node.op_type, weight, scale))
        elif node.op_type == "QAttention":
            out.append((node.op_type, inits[node.input[1]], inits[node.input[4]]))
    return out


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# --- every seed variant --------------------------------------------------------------------------

@pytest.mark.parametrize("name", SEED)
def test_seed_variant_builds_loads_and_encodes_close_to_float32(name: str, seed_artifacts: dict[str, Artifact],
                                                                tiny_source: ModelSource, float32_probe: np.ndarray,
                                                                torch_probe: np.ndarray) -> None:
    import onnxruntime as ort

    art = seed_artifacts[name]
    assert art.variant.name == name and art.meta["variant"] == name
    assert art.path.is_file() and sha256_file(art.path) == art.sha256 and art.path.stat().st_size == art.size_bytes
    check_onnx(art.path)
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} <= {"input_ids", "attention_mask", "token_type_ids"}
    assert session.get_outputs()[0].type == "tensor(float)"  # float16 keeps float32 inputs and outputs

    got = embed(art, tiny_source, PROBE)
    assert got.shape == float32_probe.shape and np.isfinite(got).all()
    cosine = np.sum(got * float32_probe, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(float32_probe, axis=1)
    # Random tiny-BERT sentence vectors are similar to each other (cosine 0.8-0.99 between different texts), so
    # closeness must be much tighter than that: measured 0.99999998 (float16) and 0.99997 (8-bit) on this model.
    if name == "float32":  # the exported and optimized file computes what PyTorch computes
        assert np.abs(got - torch_probe).max() < 1e-5
    elif name == "float16":
        assert cosine.min() > 0.99999 and np.abs(got - float32_probe).max() < 2e-3
    else:
        assert cosine.min() > 0.9995
    # Each text's nearest Float32 vector is its own: the variant still tells the texts apart.
    nearest = np.argmax(got @ float32_probe.T / np.linalg.norm(float32_probe, axis=1), axis=1)
    assert (nearest == np.arange(len(PROBE))).all()


def test_seed_variants_are_distinct_files_derived_from_float32(seed_artifacts: dict[str, Artifact]) -> None:
    assert len({a.sha256 for a in seed_artifacts.values()}) == len(SEED)
    base = seed_artifacts["float32"]
    for name, art in seed_artifacts.items():
        if name != "float32":
            assert art.meta["parent_sha256"] == base.sha256, name


def test_float16_halves_the_file_and_stores_float16_weights(seed_artifacts: dict[str, Artifact]) -> None:
    import onnx

    ratio = seed_artifacts["float16"].size_bytes / seed_artifacts["float32"].size_bytes
    assert 0.45 < ratio < 0.6  # the graph itself does not shrink: a bit over half on this tiny model
    model = onnx.load(str(seed_artifacts["float16"].path))
    big = [i for i in model.graph.initializer if np.prod(i.dims) >= 32]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    f32 = onnx.load(str(seed_artifacts["float32"].path))
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in f32.graph.initializer if np.prod(i.dims) >= 32)


@pytest.mark.parametrize("name", [*QUANTIZED_SEED, "quint8", "quint8-pc"])
def test_quantized_weights_are_integers_of_the_named_kind(name: str, tiny_source: ModelSource, shared_cache: Path,
                                                          seed_artifacts: dict[str, Artifact]) -> None:
    spec = VariantSpec.parse(name)
    art = build(tiny_source, name, shared_cache)
    float_ops = op_counts(seed_artifacts["float32"].path)
    ops = op_counts(art.path)
    # Every float matrix product became an integer one.
    assert ops.get("MatMulInteger", 0) == float_ops["MatMul"] and "MatMul" not in ops
    assert ops.get("QAttention", 0) == float_ops.get("Attention", 0)
    weights = weight_inputs(art.path)
    assert len(weights) == float_ops["MatMul"] + float_ops.get("Attention", 0)
    for op, w, scale in weights:
        assert w.dtype == (np.int8 if spec.dtype == "qint8" else np.uint8), op
        lo, hi = int(w.min()), int(w.max())
        if spec.dtype == "qint8":  # symmetric: the largest |weight| maps to 127, or 64 with reduce_range
            assert max(-lo, hi) == (64 if spec.settings["reduce_range"] else 127), (op, lo, hi)
        else:  # asymmetric: the range maps onto 0..255, or 0..127 with reduce_range
            assert (lo, hi) == ((0, 127) if spec.settings["reduce_range"] else (0, 255)), (op, lo, hi)
        if spec.settings["per_channel"]:
            assert scale.shape == (w.shape[-1],) and np.unique(scale).size > 1, op
        else:
            assert scale.size == 1, op
    assert art.size_bytes < 0.5 * seed_artifacts["float32"].size_bytes


# --- optimizer levels -------------------------------------------------------------------------------

def test_all_optimizer_levels_build(tiny_source: ModelSource, shared_cache: Path, float32_probe: np.ndarray) -> None:
    export = convert._raw_export(tiny_source, shared_cache, lambda _m: None)
    for name in NAMED_SETS["levels"]:
        spec = VariantSpec.parse(name)
        art = build(tiny_source, name, shared_cache)
        check_onnx(art.path)
        got = embed(art, tiny_source, PROBE)
        if spec.dtype == "float32":
            assert art.meta["parent_sha256"] == export.sha256
            assert np.abs(got - float32_probe).max() < 1e-5, name
        else:
            parent = build(tiny_source, f"float32-o{spec.opt_level}", shared_cache)
            assert art.meta["parent_sha256"] == parent.sha256
            cosine = np.sum(got * float32_probe, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(float32_probe, axis=1)
            assert cosine.min() > 0.9995, name


# --- export validation ------------------------------------------------------------------------------

def test_export_records_its_check(tiny_source: ModelSource, shared_cache: Path) -> None:
    export = convert._raw_export(tiny_source, shared_cache, lambda _m: None)
    assert export.meta["export_max_abs_diff"] < 1e-4
    assert export.meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert len(export.meta["export_check_shapes"]) == 3


def _no_artifact_left(cache: Path) -> None:
    assert not list(cache.rglob("model.onnx")) and not list(cache.rglob("meta.json"))
    assert not [p for p in cache.rglob(".*") if p.is_dir()]  # the temporary build folder is gone


def test_export_that_ignores_the_attention_mask_is_rejected(tiny_source: ModelSource, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that runs at every shape but computes the wrong thing on padded batches."""
    import torch

    real = exporter._export_module

    def mask_dropped(model: object, names: list[str]) -> object:
        inner = real(model, names)

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                args = list(inputs)
                args[names.index("attention_mask")] = torch.ones_like(args[names.index("attention_mask")])
                return self.inner(*args)

        return Wrapper()

    monkeypatch.setattr(exporter, "_export_module", mask_dropped)
    with pytest.raises(EvalsuiteError, match=r"differs from PyTorch by .* \(> 0\.001\)") as info:
        build_variant(tiny_source, BASELINE, tmp_path)
    assert "\n" not in str(info.value)
    _no_artifact_left(tmp_path)


@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python integer")
def test_export_with_a_frozen_sequence_length_is_rejected(tiny_source: ModelSource, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Position ids from a Python int: the tracer bakes the export length into the graph."""
    import torch

    def frozen(model: object, names: list[str]) -> object:
        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                kwargs = dict(zip(names, inputs, strict=True))
                length = int(kwargs["input_ids"].shape[1])
                kwargs["position_ids"] = torch.arange(length).unsqueeze(0)
                return self.model(**kwargs).last_hidden_state  # type: ignore[operator]

        return Wrapper()

    monkeypatch.setattr(exporter, "_export_module", frozen)
    with pytest.raises(EvalsuiteError, match=r"fails on input shape \(1, 7\).*not shape-generic") as info:
        build_variant(tiny_source, VariantSpec.parse("qint8"), tmp_path)
    assert "\n" not in str(info.value)
    _no_artifact_left(tmp_path)


def test_export_over_tolerance_is_rejected(tiny_source: ModelSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter, "_validate_export", lambda *_a, **_k: 1.0)
    with pytest.raises(EvalsuiteError, match=r"differs from PyTorch by 1\.00e\+00"):
        build_variant(tiny_source, BASELINE, tmp_path)
    _no_artifact_left(tmp_path)


# --- the artifact cache -----------------------------------------------------------------------------

def _fail(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("rebuilt although cached")


def test_cached_variants_are_not_rebuilt(tiny_source: ModelSource, shared_cache: Path,
                                         seed_artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VariantKind, "build", _fail)
    for kind in kinds():
        monkeypatch.setattr(type(kind), "build", _fail)
    monkeypatch.setattr(convert, "export_onnx", _fail)
    for name in SEED:
        again = build(tiny_source, name, shared_cache)
        assert (again.sha256, again.path) == (seed_artifacts[name].sha256, seed_artifacts[name].path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "meta"])
def test_damaged_cache_entry_is_detected_and_rebuilt(damage: str, tiny_source: ModelSource, shared_cache: Path,
                                                     seed_artifacts: dict[str, Artifact], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache)
    good = seed_artifacts["qint8-pc-7bit"]
    folder = artifact_dir(tiny_source, "qint8-pc-7bit", cache)
    onnx_file = folder / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        onnx_file.write_bytes(bytes(data))
    elif damage == "truncate":
        onnx_file.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "delete":
        onnx_file.unlink()
    else:
        (folder / "meta.json").write_text("{not json")
    monkeypatch.setattr(convert, "export_onnx", _fail)  # the Float32 parent is intact: only this entry is redone
    rebuilt = build(tiny_source, "qint8-pc-7bit", cache)
    assert rebuilt.path == onnx_file and rebuilt.sha256 == good.sha256 == sha256_file(onnx_file)
    assert json.loads((folder / "meta.json").read_text())["sha256"] == good.sha256
    make_session(rebuilt.path, 1)


def test_damaged_entry_whose_parent_is_cached_does_not_reexport(tiny_source: ModelSource, shared_cache: Path,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage to the raw export alone does not matter while the optimized Float32 is intact."""
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache)
    (artifact_dir(tiny_source, "export", cache) / "model.onnx").write_bytes(b"garbage")
    monkeypatch.setattr(convert, "export_onnx", _fail)
    monkeypatch.setattr(VariantKind, "build", _fail)
    for kind in kinds():
        monkeypatch.setattr(type(kind), "build", _fail)
    assert build(tiny_source, "float32", cache).sha256 == build(tiny_source, "float32", shared_cache).sha256


# --- broken ONNX files ------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"this is not a protobuf", "truncated"])
def test_broken_onnx_file_is_one_clear_line(content: bytes | str, seed_artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    if content == "truncated":
        path.write_bytes(seed_artifacts["float32"].path.read_bytes()[:5000])
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(EvalsuiteError, match=rf"^cannot load ONNX model {path}: ") as info:
        make_session(path, 1)
    assert "\n" not in str(info.value)
    if content:
        with pytest.raises(EvalsuiteError, match=rf"^broken ONNX file {path}: "):
            check_onnx(path)


# --- evalsuite convert --------------------------------------------------------------------------------

def test_convert_command_prints_the_file_of_each_named_variant(tiny_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Each printed file is the variant it names (read from the file itself), with its true hash and size; a second
    call builds nothing."""
    import hashlib

    import onnx
    from test_gate import run_cli

    cache = tmp_path / "cache"
    args = ("convert", "--model", str(tiny_model), "--variant", "qint8-7bit,float16", "--cache-dir", str(cache))
    code, out, err = run_cli(monkeypatch, capsys, *args, "--json")
    assert code == 0, err
    assert "exporting Float32 ONNX" in err and "building qint8-7bit" in err and "building float16" in err
    built = {a["variant"]: a for a in json.loads(out)["artifacts"]}
    assert list(built) == ["qint8-7bit", "float16"]
    for a in built.values():
        data = Path(a["path"]).read_bytes()
        assert a["sha256"] == hashlib.sha256(data).hexdigest() and a["size_bytes"] == len(data)
        assert Path(a["path"]).is_relative_to(cache)
    weights = weight_inputs(Path(built["qint8-7bit"]["path"]))
    assert weights and all(w.dtype == np.int8 and np.abs(w).max() == 64 and s.size == 1 for _, w, s in weights)
    f16 = onnx.load(built["float16"]["path"])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in f16.graph.initializer)

    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "building" not in err and "exporting" not in err  # cached: nothing is built again
    lines = [line for line in out.strip().splitlines() if not line.lstrip().startswith("fused:")]
    assert [line.split()[0] for line in lines] == ["qint8-7bit", "float16"]
    assert [line.split()[-1] for line in lines] == [built["qint8-7bit"]["path"], built["float16"]["path"]]
