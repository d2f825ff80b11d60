"""The variant grammar ``<dtype>[-<option>...][-o<level>]``: parsing, canonical names, errors, named sets, kinds."""

from __future__ import annotations

import itertools
import re

import pytest

from evalsuite.errors import EvalsuiteError
from evalsuite.variants import DEFAULT_OPT_LEVEL, OPT_LEVELS, VariantSpec, expand, grammar, named_sets, variant_order

NAMED_SETS = named_sets()
DTYPES = ("float32", "float16", "qint8", "quint8")
QUANTIZED = ("qint8", "quint8")


def _spec(dtype: str, pc: bool = False, rr: bool = False, level: int = DEFAULT_OPT_LEVEL) -> VariantSpec:
    return VariantSpec(dtype, {"per_channel": pc, "reduce_range": rr} if dtype in QUANTIZED else {}, level)


@pytest.mark.parametrize("name", NAMED_SETS["all"])
def test_every_variant_round_trips(name: str) -> None:
    spec = VariantSpec.parse(name)
    assert spec.name == name
    assert VariantSpec.parse(spec.name) == spec
    assert VariantSpec(spec.dtype, spec.settings, spec.opt_level) == spec
    assert hash(VariantSpec(spec.dtype, spec.settings, spec.opt_level)) == hash(spec)


def test_all_is_the_full_grammar() -> None:
    """Every valid combination, once: 2 float dtypes x 4 levels + 2 int dtypes x 2 x 2 flags x 4 levels."""
    expected = set()
    for dtype, pc, rr, level in itertools.product(DTYPES, (False, True), (False, True), OPT_LEVELS):
        if dtype in QUANTIZED or not (pc or rr):
            expected.add(_spec(dtype, pc, rr, level))
    specs = [VariantSpec.parse(n) for n in NAMED_SETS["all"]]
    assert len(specs) == len(set(specs)) == 40
    assert set(specs) == expected


@pytest.mark.parametrize(("text", "fields"), [
    ("float32", ("float32", False, False, 1)),
    ("float16-o2", ("float16", False, False, 2)),
    ("qint8-pc-7bit", ("qint8", True, True, 1)),
    ("quint8-7bit-o99", ("quint8", False, True, 99)),
    ("qint8-pc-o0", ("qint8", True, False, 0)),
])
def test_parse_fields(text: str, fields: tuple[object, ...]) -> None:
    spec = VariantSpec.parse(text)
    settings = spec.settings
    assert (spec.dtype, settings.get("per_channel", False), settings.get("reduce_range", False), spec.opt_level) == fields


def test_default_level_is_omitted_from_the_name() -> None:
    assert DEFAULT_OPT_LEVEL == 1
    assert VariantSpec.parse("qint8-pc-7bit-o1") == VariantSpec.parse("qint8-pc-7bit")
    assert VariantSpec.parse("qint8-pc-7bit-o1").name == "qint8-pc-7bit"
    assert VariantSpec.parse("float32-o1").name == "float32"
    assert VariantSpec.parse("float32-o0").name == "float32-o0"
    assert str(VariantSpec("qint8", opt_level=99)) == "qint8-o99"
    assert VariantSpec("qint8", {"per_channel": False}) == VariantSpec("qint8")  # defaults are not part of a spec


@pytest.mark.parametrize(("text", "canonical"), [
    ("QINT8-PC-7BIT", "qint8-pc-7bit"),
    ("  Float16-O2 ", "float16-o2"),
    ("QUInt8-7Bit", "quint8-7bit"),
])
def test_names_are_case_insensitive(text: str, canonical: str) -> None:
    assert VariantSpec.parse(text).name == canonical


@pytest.mark.parametrize(("text", "suggestion"), [
    ("qint8-7bit-pc", "qint8-pc-7bit"),
    ("qint8-o2-pc", "qint8-pc-o2"),
    ("qint8-o2-7bit-pc", "qint8-pc-7bit-o2"),
    ("QINT8-7BIT-PC", "qint8-pc-7bit"),
    ("qint8-o1-pc", "qint8-pc"),  # the suggestion is canonical too
    ("qint9-7bit-pc", "qint8-pc-7bit"),  # and it parses: the dtype is corrected as well
])
def test_wrong_order_suggests_the_canonical_spelling(text: str, suggestion: str) -> None:
    with pytest.raises(EvalsuiteError, match=rf"cannot parse variant .*did you mean '{suggestion}'\?$"):
        VariantSpec.parse(text)


def test_a_suggestion_is_never_itself_invalid() -> None:
    with pytest.raises(EvalsuiteError) as info:
        VariantSpec.parse("float16-7bit-pc")  # reordering gives float16-pc-7bit, which is also invalid
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("qint9", r"unknown dtype 'qint9'; did you mean 'qint8'\?"),
    ("int8", r"unknown dtype 'int8'; did you mean 'qint8'\?"),
    ("float64", r"unknown dtype 'float64'; did you mean 'float\d\d'\?"),
    ("float32-pc", r"-pc applies to qint8/quint8/static8 only, not float32"),
    ("float16-pc", r"-pc applies to qint8/quint8/static8 only, not float16"),
    ("float32-7bit", r"-7bit applies to qint8/quint8 only, not float32"),
    ("float16-7bit-o2", r"-7bit applies to qint8/quint8 only, not float16"),
    ("qint8-o3", r"optimizer level must be one of 0, 1, 2, 99, not 3"),
    ("float32-o100", r"optimizer level must be one of 0, 1, 2, 99, not 100"),
    ("qint8-o", r"cannot parse variant 'qint8-o'"),
    ("qint8-ox", r"cannot parse variant 'qint8-ox'"),
    ("qint8-pc-pc", r"cannot parse variant"),
    ("", r"cannot parse variant ''"),
    ("qint8 pc", r"cannot parse variant 'qint8 pc'"),
])
def test_bad_names(text: str, message: str) -> None:
    with pytest.raises(EvalsuiteError, match=message) as info:
        VariantSpec.parse(text)
    assert "\n" not in str(info.value)


def test_direct_construction_checks_too() -> None:
    with pytest.raises(EvalsuiteError):
        VariantSpec("float16", per_channel=True)
    with pytest.raises(EvalsuiteError, match="per_channel of qint8 cannot be 3"):
        VariantSpec("qint8", per_channel=3)
    with pytest.raises(EvalsuiteError):
        VariantSpec("qint8", opt_level=5)
    with pytest.raises(EvalsuiteError):
        VariantSpec("int3")  # an unknown dtype


def test_expand_seed_is_the_reference_table_in_order() -> None:
    assert [s.name for s in expand(["seed"])] == [
        "float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8-7bit", "qint8"]


def test_expand_named_sets_and_case() -> None:
    assert [s.name for s in expand(["SEED"])] == list(NAMED_SETS["seed"])
    assert [s.name for s in expand(["levels"])] == [
        "float32-o0", "float32", "float32-o2", "float32-o99",
        "qint8-pc-7bit-o0", "qint8-pc-7bit", "qint8-pc-7bit-o2", "qint8-pc-7bit-o99"]
    assert len(expand(["all"])) == 40


def test_expand_comma_lists_repeats_and_dedup() -> None:
    assert [s.name for s in expand(["qint8, float32", "float16"])] == ["qint8", "float32", "float16"]
    # The same variant spelled differently is one variant, kept at its first position.
    assert [s.name for s in expand(["qint8-o1,QINT8", "qint8", "float32,qint8-o1"])] == ["qint8", "float32"]
    assert [s.name for s in expand(["qint8", "seed"])] == ["qint8", *[n for n in NAMED_SETS["seed"] if n != "qint8"]]
    assert [s.name for s in expand(["seed,levels"])] == list(dict.fromkeys(
        VariantSpec.parse(n).name for n in (*NAMED_SETS["seed"], *NAMED_SETS["levels"])))


def test_expand_errors() -> None:
    with pytest.raises(EvalsuiteError, match="no variant given"):
        expand([])
    with pytest.raises(EvalsuiteError, match="no variant given"):
        expand([" , ,", ""])
    with pytest.raises(EvalsuiteError, match="did you mean 'qint8'"):
        expand(["float32,qint9"])


# --- valued options (a token that carries a name, e.g. ``-xtuned1``) ------------------------------------

@pytest.fixture
def valued_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A throwaway kind ``vq8`` with a fixed option ``-pc`` and a valued option ``-x<NAME>``, registered for one test."""
    from evalsuite.variants import registry

    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    registry.kinds()  # discover the real kinds into the copy first

    @registry.register
    class Valued(registry.VariantKind):
        name = "valued-test"
        dtypes = ("vq8",)
        summary = "test kind"
        options = (registry.Option("per_channel", "per-chan", "per-channel", {"pc": True}),
                   registry.Option("float_nodes", "float", "nodes kept in float", prefix="x", default=None))


def test_valued_option_round_trips(valued_kind: None) -> None:
    spec = VariantSpec.parse("vq8-pc-xTuned1-o2")
    assert (spec.dtype, spec.settings, spec.opt_level) == ("vq8", {"per_channel": True, "float_nodes": "tuned1"}, 2)
    assert spec.name == "vq8-pc-xtuned1-o2"
    assert VariantSpec.parse(spec.name) == spec == VariantSpec("vq8", {"per_channel": True, "float_nodes": "tuned1"}, 2)
    assert VariantSpec.parse("vq8-xa").name == "vq8-xa"
    assert VariantSpec.parse("vq8").settings == {"per_channel": False, "float_nodes": None}
    assert "[-pc] [-x<NAME>]" in grammar() and "-x<NAME>" in grammar()
    # the free value is not enumerated into `all`, and sorts after the default
    assert [n for n in named_sets()["all"] if n.startswith("vq8")] == ["vq8-o0", "vq8", "vq8-o2", "vq8-o99", "vq8-pc-o0",
                                                                      "vq8-pc", "vq8-pc-o2", "vq8-pc-o99"]
    assert variant_order(["vq8-xb", "vq8", "vq8-xa"]) == ["vq8", "vq8-xa", "vq8-xb"]


@pytest.mark.parametrize(("text", "message"), [
    ("vq8-x", "cannot parse variant 'vq8-x'"),          # a prefix with no value
    ("vq8-xa-pc", "did you mean 'vq8-pc-xa'"),            # options in canonical order only
    ("float16-xa", "-xa applies to qint8/quint8/static8/vq8 only, not float16"),
])
def test_valued_option_errors(valued_kind: None, text: str, message: str) -> None:
    with pytest.raises(EvalsuiteError, match=re.escape(message)):
        VariantSpec.parse(text)
    with pytest.raises(EvalsuiteError, match="float_nodes of vq8 cannot be 'a-b'"):
        VariantSpec("vq8", {"float_nodes": "a-b"})
