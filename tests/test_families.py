"""Every supported encoder family (BERT, RoBERTa, XLM-R, MPNet, DistilBERT) through evalsuite's pipeline.

References are independent: sentence-transformers for embeddings and settings, transformers for pad ids,
PyTorch (inside the build) for the optimized graph, and hand-written fusion expectations per family.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import FAMILIES, HIDDEN, LAYERS, VARIANTS, make_family

from evalsuite.build import build_variant
from evalsuite.encode import BatchPolicy, OnnxEncoder, TextTokenizer
from evalsuite.errors import EvalsuiteError
from evalsuite.models import resolve_model
from evalsuite.variants import BASELINE, expand

# Texts of very different lengths, given in order in batches of 5: most rows are padded, some truncated.
TEXTS = [
    "protein", "", "Heart DISEASE and   diet sugar insulin", "  leading and trailing spaces  ",
    "stock bond market price tax loan bank fund rate risk credit debt equity income " * 4,
    "What is the effect of diet on cancer? Results of 12 studies.", "tab\tseparated\nand new\nlines",
    "Über café naïve résumé – unicode, émoji 🙂 and CJK 蛋白质.", "a", "bone muscle skin lung " * 40,
    "MOUSE study of tumor growth", "?!",
]
POLICY = BatchPolicy(batch_size=5, query_batch_size=5, order="given")

# onnxruntime contrib operators of the optimized Float32 graph (2 layers), see evalsuite/variants/optimize.py.
EXPECTED_FUSIONS = {
    "bert": {"Attention": LAYERS, "BiasGelu": LAYERS, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 2 * LAYERS},
    "distilbert": {"Attention": LAYERS, "BiasGelu": LAYERS, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 2 * LAYERS},
    "roberta": {"Attention": LAYERS, "BiasGelu": LAYERS, "SkipLayerNormalization": 2 * LAYERS},
    "xlm-roberta": {"Attention": LAYERS, "BiasGelu": LAYERS, "SkipLayerNormalization": 2 * LAYERS},
    # no attention fusion (relative position bias); the embedding Add + LayerNorm becomes a fifth SkipLayerNormalization
    "mpnet": {"BiasGelu": LAYERS, "SkipLayerNormalization": 2 * LAYERS + 1},
}


@pytest.fixture(scope="module")
def tiny_family_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make(family, variant="mean")`` -> folder, each built once per module."""
    made: dict[tuple[str, str], Path] = {}

    def make(family: str, variant: str = "mean") -> Path:
        if (family, variant) not in made:
            made[family, variant] = make_family(family, tmp_path_factory.mktemp(f"tiny-{family}-{variant}"), variant)
        return made[family, variant]

    return make


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families-cache")


def contrib_ops(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        if node.domain == "com.microsoft":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def st_model(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def st_embed(model: Any, kind: str) -> np.ndarray:
    """sentence-transformers' embeddings with the prompt the model was trained with.

    sentence-transformers 6 pre-fills {"query": "", "document": ""}, so its encode_document() ignores an e5-style
    "passage" prompt; the reference takes the first non-empty of document/passage/corpus, as e5 is used.
    """
    names = ("query",) if kind == "query" else ("document", "passage", "corpus")
    name = next((n for n in names if model.prompts.get(n)), None)
    return model.encode(TEXTS, batch_size=4, convert_to_numpy=True, prompt_name=name)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_float32_matches_sentence_transformers(family: str, variant: str, tiny_family_factory: Callable[..., Path],
                                               cache: Path) -> None:
    folder = tiny_family_factory(family, variant)
    source = resolve_model(str(folder))
    encoder = OnnxEncoder(build_variant(source, BASELINE, cache), source, POLICY, threads=1)
    reference = st_model(folder)
    assert source.settings.max_seq_length == reference.max_seq_length
    for kind in ("document", "query"):
        got = encoder.embed(TEXTS, prompt_type=kind)  # type: ignore[arg-type]
        expected = st_embed(reference, kind)
        assert got.shape == expected.shape == (len(TEXTS), HIDDEN)
        assert np.abs(got - expected).max() <= 1e-5, (family, variant, kind, np.abs(got - expected).max(axis=1))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_settings_and_pad_id_follow_the_model(family: str, tiny_family_factory: Callable[..., Path]) -> None:
    from transformers import AutoTokenizer

    cls = resolve_model(str(tiny_family_factory(family, "cls"))).settings
    assert (cls.pooling, cls.normalize) == ("cls", True)
    e5 = resolve_model(str(tiny_family_factory(family, "e5"))).settings
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "passage: ")
    assert resolve_model(str(tiny_family_factory(family, "len-from-tokenizer"))).settings.max_seq_length == 48
    lower = resolve_model(str(tiny_family_factory(family, "lower"))).settings
    assert lower.lowercase and lower.to_dict()["lowercase"] is True
    mean = resolve_model(str(tiny_family_factory(family))).settings
    assert "lowercase" not in mean.to_dict()  # off: left out, so existing cache keys and identities stay the same
    folder = tiny_family_factory(family)
    expected_pad = {"bert": 0, "distilbert": 0, "roberta": 1, "xlm-roberta": 1, "mpnet": 1}[family]
    assert TextTokenizer(folder, 64).pad_id == AutoTokenizer.from_pretrained(folder).pad_token_id == expected_pad


@pytest.mark.parametrize("family", list(FAMILIES))
def test_optimizer_fuses_what_fits_the_family(family: str, tiny_family_factory: Callable[..., Path], cache: Path) -> None:
    art = build_variant(resolve_model(str(tiny_family_factory(family))), BASELINE, cache)
    assert contrib_ops(art.path) == EXPECTED_FUSIONS[family]
    assert art.meta["fused_ops"] == art.fused_ops == EXPECTED_FUSIONS[family]  # recorded at build time
    assert 0 <= art.meta["optimized_max_abs_diff"] < 1e-4  # the optimized graph was checked against PyTorch


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_seed_variant_builds_and_encodes(family: str, tiny_family_factory: Callable[..., Path], cache: Path) -> None:
    source = resolve_model(str(tiny_family_factory(family)))
    base = OnnxEncoder(build_variant(source, BASELINE, cache), source, POLICY, threads=1).embed(TEXTS)
    for spec in expand(["seed"]):
        art = build_variant(source, spec, cache)
        got = OnnxEncoder(art, source, POLICY, threads=1).embed(TEXTS)
        assert got.shape == (len(TEXTS), HIDDEN) and np.isfinite(got).all(), spec.name
        cosine = np.sum(got * base, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(base, axis=1)
        assert cosine.min() > 0.99, (spec.name, cosine.min())
        assert art.fused_ops == contrib_ops(art.path), spec.name
        if spec.dtype in ("qint8", "quint8") and "Attention" in EXPECTED_FUSIONS[family]:
            assert art.fused_ops.get("QAttention") == LAYERS, (spec.name, art.fused_ops)


def test_convert_prints_fused_ops(tiny_family_factory: Callable[..., Path], cache: Path) -> None:
    from typer.testing import CliRunner

    from evalsuite.cli import app

    folder = tiny_family_factory("mpnet")
    args = ["convert", "--model", str(folder), "--cache-dir", str(cache), "--variant", "float32,qint8-pc-7bit"]
    listed = CliRunner().invoke(app, [*args, "--json"])
    assert listed.exit_code == 0, listed.output
    artifacts = {a["variant"]: a for a in json.loads(listed.stdout)["artifacts"]}
    for art in artifacts.values():
        assert art["fused_ops"] == contrib_ops(Path(art["path"]))
    assert artifacts["float32"]["fused_ops"] == EXPECTED_FUSIONS["mpnet"]
    text = CliRunner().invoke(app, args).stdout
    assert "fused: BiasGelu 2, SkipLayerNormalization 5" in text


def test_a_fusion_that_changes_the_numbers_fails_the_build(tiny_family_factory: Callable[..., Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The "vit" optimizer drops the attention mask: padded batches change, and the build must say so."""
    from onnxruntime.transformers import optimizer

    real = optimizer.optimize_model
    monkeypatch.setattr(optimizer, "optimize_model", lambda *a, **k: real(*a, **{**k, "model_type": "vit",
                                                                                "optimization_options": None}))
    source = resolve_model(str(tiny_family_factory("roberta")))
    with pytest.raises(EvalsuiteError, match=r"optimized ONNX graph .* differs from PyTorch") as info:
        build_variant(source, BASELINE, tmp_path)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("float32-*/model.onnx"))


def test_an_empty_document_prompt_does_not_hide_passage(tiny_family_factory: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "e5"
    make_family("bert", folder, "e5")
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "", "passage": "passage: "}}))
    settings = resolve_model(str(folder), configs_dir=tmp_path).settings
    assert (settings.query_prefix, settings.document_prefix) == ("query: ", "passage: ")
