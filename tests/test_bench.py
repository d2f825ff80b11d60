"""The benchmark harness: schedule order, statistics, ratios, the bench.json schema, and one tiny real run.

No test asserts a timing: the harness is driven by a fake runner and a fake clock whose costs are known,
and the real run only checks shapes and consistency.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evalsuite.bench import (
    SCHEMA,
    BenchConfig,
    BenchResult,
    Machine,
    Measurement,
    compare,
    exact_length_inputs,
    format_markdown,
    level_gains,
    measure,
    parse_families,
    parse_ints,
    read_bench,
    run_bench,
    save_bench,
    schedule,
    speedup_tables,
    summarize,
)
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import VariantSpec, expand


class FakeClock:
    """A clock that only moves when the fake runner says a call took time."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeRunner:
    """Records calls; each call costs ``cost[variant] * length * batch`` ms, plus ``extra`` on chosen call numbers."""

    def __init__(self, clock: FakeClock, cost: dict[str, float], extra: dict[int, float] | None = None) -> None:
        self.clock, self.cost, self.extra = clock, cost, extra or {}
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, variant: str, length: int, batch: int) -> None:
        ms = self.cost[variant] * length * batch + self.extra.get(len(self.calls), 0.0)
        self.calls.append((variant, length, batch))
        self.clock.now += int(round(ms * 1e6))


# --- schedule and measure ---------------------------------------------------------------------------


def test_schedule_is_round_robin_with_rotating_start() -> None:
    steps = schedule(["a", "b", "c"], [(4, 1), (8, 1)], repeats=3, warmup=1)
    assert len(steps) == 4 * 2 * 3
    # warm-up round first, untimed, then rounds 0..2
    assert [s.rep for s in steps[:6]] == [-1] * 6 and not any(s.timed for s in steps[:6])
    by_round = [[(s.length, s.variant) for s in steps if s.rep == r] for r in (-1, 0, 1, 2)]
    assert by_round[0] == [(4, "a"), (4, "b"), (4, "c"), (8, "a"), (8, "b"), (8, "c")]
    assert by_round[1] == [(4, "b"), (4, "c"), (4, "a"), (8, "b"), (8, "c"), (8, "a")]
    assert by_round[2] == [(4, "c"), (4, "a"), (4, "b"), (8, "c"), (8, "a"), (8, "b")]
    # within a cell every variant runs exactly once per round, back to back
    for r in range(3):
        for length in (4, 8):
            assert sorted(s.variant for s in steps if s.rep == r and s.length == length) == ["a", "b", "c"]


def test_schedule_gives_each_variant_the_first_slot_equally_often() -> None:
    steps = schedule(["a", "b", "c", "d"], [(16, 1)], repeats=8, warmup=0)
    firsts = Counter(steps[i].variant for i in range(0, len(steps), 4))
    assert firsts == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_measure_times_each_call_and_skips_warmup() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, {"float32": 1.0, "q": 0.5})
    steps = schedule(["float32", "q"], [(4, 1), (8, 2)], repeats=3, warmup=2)
    rounds: list[tuple[int, int]] = []
    samples = measure(steps, runner, clock, progress=lambda done, total: rounds.append((done, total)))
    assert runner.calls == [(s.variant, s.length, s.batch) for s in steps]  # the schedule is followed exactly
    assert samples[("float32", 4, 1)] == [4.0, 4.0, 4.0]  # 3 timed, the 2 warm-up rounds dropped
    assert samples[("q", 8, 2)] == [8.0, 8.0, 8.0]
    assert rounds == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_measure_keeps_outliers_in_the_samples_and_the_median_ignores_them() -> None:
    clock = FakeClock()
    steps = schedule(["float32", "q"], [(10, 1)], repeats=5, warmup=0)
    slow = next(i for i, s in enumerate(steps) if s.variant == "q" and s.rep == 2)
    runner = FakeRunner(clock, {"float32": 1.0, "q": 0.25}, extra={slow: 500.0})
    samples = measure(steps, runner, clock)
    assert sorted(samples[("q", 10, 1)]) == [2.5, 2.5, 2.5, 2.5, 502.5]
    rows = compare(samples, ["float32", "q"], [(10, 1)])
    assert rows[1].median_ms == 2.5 and rows[1].speedup == pytest.approx(4.0)


# --- statistics and ratios --------------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "median", "p10", "p90"), [
    ([5.0], 5.0, 5.0, 5.0),
    ([3.0, 1.0, 2.0], 2.0, 1.2, 2.8),  # ranks 0.2 and 1.8
    ([10.0, 40.0, 20.0, 30.0], 25.0, 13.0, 37.0),  # ranks 0.3 and 2.7
    (list(map(float, range(1, 12))), 6.0, 2.0, 10.0),  # 11 values: ranks 1, 5, 9 exactly
])
def test_summarize_by_hand(samples: list[float], median: float, p10: float, p90: float) -> None:
    t = summarize(samples)
    assert (t.median_ms, t.p10_ms, t.p90_ms, t.runs) == (pytest.approx(median), pytest.approx(p10), pytest.approx(p90), len(samples))


def test_summarize_rejects_nothing() -> None:
    with pytest.raises(EvalsuiteError):
        summarize([])


def test_compare_ratio_is_float32_median_over_variant_median() -> None:
    samples = {("float32", 16, 1): [10.0, 12.0, 11.0], ("qint8", 16, 1): [5.0, 4.0, 6.0], ("float16", 16, 1): [22.0, 20.0, 24.0],
               ("float32", 16, 32): [100.0], ("qint8", 16, 32): [40.0], ("float16", 16, 32): [300.0]}
    rows = compare(samples, ["float32", "qint8", "float16"], [(16, 32), (16, 1)])
    assert [(m.variant, m.batch) for m in rows] == [("float32", 1), ("qint8", 1), ("float16", 1),
                                                    ("float32", 32), ("qint8", 32), ("float16", 32)]
    by = {(m.variant, m.batch): m for m in rows}
    assert by["float32", 1].speedup == 1.0
    assert by["qint8", 1].speedup == pytest.approx(11.0 / 5.0)
    assert by["float16", 1].speedup == pytest.approx(11.0 / 22.0)  # slower than Float32: below 1
    assert by["qint8", 32].float32_median_ms == 100.0 and by["qint8", 32].speedup == pytest.approx(2.5)
    assert by["qint8", 32].tokens_per_s == pytest.approx(16 * 32 / 0.040)
    assert by["qint8", 1].tokens_per_s == pytest.approx(16 / 0.005)


def test_level_gains_are_over_level_zero_of_the_same_family() -> None:
    def m(variant: str, ms: float, length: int = 8) -> Measurement:
        return Measurement(variant, length, 1, ms, ms, ms, 10.0, 10.0 / ms, 1.0, 1)

    rows = [m("float32", 8.0), m("float32-o0", 10.0), m("float32-o2", 5.0), m("float32-o99", 4.0),
            m("qint8-pc-7bit", 3.0), m("qint8-pc-7bit-o0", 6.0), m("qint8", 2.0)]  # qint8 alone: no o0, no table
    gains = {(g.family, g.level): g.gain for g in level_gains(rows)}
    assert gains == {("float32", 0): 1.0, ("float32", 1): pytest.approx(1.25), ("float32", 2): pytest.approx(2.0),
                     ("float32", 99): pytest.approx(2.5), ("qint8-pc-7bit", 0): 1.0, ("qint8-pc-7bit", 1): pytest.approx(2.0)}


# --- configuration and input --------------------------------------------------------------------------


def test_measured_variants_put_float32_first_and_add_level_siblings_once() -> None:
    cfg = BenchConfig(variants=tuple(expand(["qint8-pc-7bit,float16"])), level_families=parse_families("float32,qint8-pc-7bit-o2"),
                      cache_dir=Path("unused"))
    assert [s.name for s in cfg.measured()] == ["float32", "qint8-pc-7bit", "float16", "float32-o0", "float32-o2", "float32-o99",
                                                "qint8-pc-7bit-o0", "qint8-pc-7bit-o2", "qint8-pc-7bit-o99"]
    assert [s.name for s in cfg.shown()] == ["float32", "qint8-pc-7bit", "float16"]
    assert parse_families("none") == () and parse_families("") == ()


def test_seed_measures_all_seven_plus_levels() -> None:
    cfg = BenchConfig(variants=tuple(expand(["seed"])), cache_dir=Path("unused"))
    assert len(cfg.shown()) == 7 and len(cfg.measured()) == 7 + 6


@pytest.mark.parametrize("text", ["4,x", "", "4;8", "-4", "4.5", "0"])
def test_parse_ints_rejects_bad_lists(text: str) -> None:
    with pytest.raises(EvalsuiteError, match="--lengths"):
        parse_ints(text, "--lengths")


def test_parse_ints_sorts_and_dedupes() -> None:
    assert parse_ints(" 32, 4,8,4 ", "--lengths") == (4, 8, 32)


@pytest.mark.parametrize("kwargs", [{"lengths": (1, 8)}, {"batches": (0,)}, {"repeats": 0}, {"threads": 0}, {"variants": ()}])
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"variants": (VariantSpec.parse("qint8"),), "cache_dir": Path("unused")}
    with pytest.raises(EvalsuiteError):
        BenchConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_exact_length_inputs(tiny_source) -> None:  # noqa: ANN001
    rows = exact_length_inputs(tiny_source, (2, 5, 64))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_source.path / "tokenizer.json"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    for n, row in rows.items():
        assert row.shape == (n,) and row.dtype == np.int64
        assert row[0] == cls and row[-1] == sep and (n == 2 or sep not in row[1:-1])
    with pytest.raises(EvalsuiteError, match="max_seq_length 64"):
        exact_length_inputs(tiny_source, (16, 65))


def test_machine_description_says_whether_the_cpu_has_vnni() -> None:
    flags = {"avx2": True, "avx512f": False, "avx512_vnni": False, "amx_int8": False}
    plain = Machine("AMD EPYC", "family 23 model 49", 2, flags, False, 2, "1.32.0").describe()
    assert plain.startswith("AMD EPYC (family 23 model 49), AVX2, no VNNI,") and plain.endswith("2 threads, onnxruntime 1.32.0")
    vnni = Machine("Xeon", "", 8, {**flags, "avx512f": True, "avx512_vnni": True}, True, 4, "1.32.0").describe()
    assert "AVX-512, VNNI (avx512_vnni)" in vnni and "no VNNI" not in vnni


# --- a real run on the tiny model -----------------------------------------------------------------------

# The fields report.py reads; more may be added, none renamed or removed (docs/bench-schema.md).
REQUIRED = {
    "schema": str, "model": {"id": str, "weights_sha256": str},
    "machine": {"cpu": {"model": str, "flags": dict, "vnni": bool}, "threads": int, "onnxruntime": str},
    "config": {"lengths": list, "batches": list, "repeats": int},
}
RESULT_FIELDS = {"variant": str, "length": int, "batch": int, "median_ms": float, "p10_ms": float, "p90_ms": float,
                 "float32_median_ms": float, "speedup": float, "tokens_per_s": float}
VARIANT_FIELDS = {"size_bytes": int, "peak_rss_mb": float, "onnx_sha256": str}


def _check_shape(doc: dict, spec: dict, where: str = "") -> None:  # type: ignore[type-arg]
    for key, kind in spec.items():
        assert key in doc, f"missing {where}{key}"
        if isinstance(kind, dict):
            _check_shape(doc[key], kind, f"{where}{key}.")
        else:
            assert isinstance(doc[key], kind), f"{where}{key} is {type(doc[key]).__name__}, not {kind.__name__}"


@pytest.fixture(scope="module")
def tiny_bench(tiny_model: Path, shared_cache: Path) -> BenchResult:
    cfg = BenchConfig(variants=(VariantSpec.parse("qint8"),), model=str(tiny_model), lengths=(8, 16), batches=(1, 2),
                      repeats=2, warmup=1, threads=1, level_families=(VariantSpec.parse("float32"),), cache_dir=shared_cache)
    return run_bench(cfg, command="pytest")


def test_run_bench_measures_every_cell(tiny_bench: BenchResult) -> None:
    names = ["float32", "qint8", "float32-o0", "float32-o2", "float32-o99"]
    assert list(tiny_bench.variants) == names
    assert [(m.variant, m.length, m.batch) for m in tiny_bench.measurements] == [
        (v, n, b) for b in (1, 2) for n in (8, 16) for v in names]
    for m in tiny_bench.measurements:
        base = tiny_bench.cell("float32", m.length, m.batch)
        assert m.runs == 2 and m.p10_ms <= m.median_ms <= m.p90_ms
        assert m.float32_median_ms == base.median_ms and m.speedup == pytest.approx(base.median_ms / m.median_ms)
    assert tiny_bench.variants["qint8"].role == "requested" and tiny_bench.variants["float32-o2"].role == "levels"
    assert tiny_bench.variants["qint8"].size_bytes < tiny_bench.variants["float32"].size_bytes
    peak, extra = tiny_bench.variants["float32"].peak_rss_mb, tiny_bench.variants["float32"].session_rss_mb
    assert peak is not None and extra is not None and 0 < extra < peak
    assert {(g.level, g.length, g.batch) for g in tiny_bench.levels} == {(lvl, n, b) for lvl in (0, 1, 2, 99) for n in (8, 16) for b in (1, 2)}


def test_bench_json_schema_and_round_trip(tiny_bench: BenchResult, tmp_path: Path) -> None:
    path = save_bench(tiny_bench, tmp_path)
    assert path == tmp_path / tiny_bench.model_slug / "bench.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema"] == SCHEMA
    _check_shape(doc, REQUIRED)
    assert doc["config"]["lengths"] == [8, 16] and doc["config"]["batches"] == [1, 2] and doc["config"]["repeats"] == 2
    assert len(doc["results"]) == 5 * 2 * 2
    for row in doc["results"]:
        _check_shape(row, RESULT_FIELDS)
    for info in doc["variants"].values():
        _check_shape(info, VARIANT_FIELDS)
    assert read_bench(path) == tiny_bench
    (tmp_path / "bad.json").write_text('{"schema": "other/1"}')
    with pytest.raises(EvalsuiteError, match="evalsuite.bench/1"):
        read_bench(tmp_path / "bad.json")


def test_tables_and_markdown(tiny_bench: BenchResult) -> None:
    tables = speedup_tables(tiny_bench)
    assert [t.header for t in tables] == [["tokens", "float32 ms", "qint8"], ["tokens", "float32 tok/s", "qint8"]]
    assert [r[0] for r in tables[0].rows] == ["8", "16", "geomean"]
    q8 = tiny_bench.cell("qint8", 8, 1)
    assert tables[0].rows[0][2].startswith(f"{q8.speedup:.2f}x")
    assert "VNNI" in tables[0].title  # the header says whether the CPU has VNNI, either way
    md = format_markdown(tiny_bench)
    header_rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| tokens")]
    assert ["tokens", "float32 ms", "qint8"] in header_rows and "Optimizer levels, float32, batch 1" in md
    assert "`pytest`" in md and tiny_bench.machine.describe() in md


# --- the command --------------------------------------------------------------------------------------


def test_cli_bench_json(tiny_model: Path, shared_cache: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evalsuite.cli import app

    md = tmp_path / "out" / "bench.md"
    result = CliRunner().invoke(app, ["bench", "--model", str(tiny_model), "--variant", "qint8", "--lengths", "8",
                                      "--batch", "1", "--repeats", "2", "--threads", "1", "--levels", "none", "--no-memory",
                                      "--cache-dir", str(shared_cache), "--results-dir", str(tmp_path / "res"),
                                      "--output", str(md), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"machine", "results"} and [r["variant"] for r in doc["results"]] == ["float32", "qint8"]
    assert doc["variants"]["qint8"]["peak_rss_mb"] is None  # --no-memory: not measured, not made up
    assert (tmp_path / "res" / Path(doc["model"]["slug"]) / "bench.json").is_file()
    assert md.read_text(encoding="utf-8").startswith("# Latency of ONNX variants")


@pytest.mark.parametrize(("args", "message"), [
    (["--lengths", "4,x"], "--lengths"),
    (["--batch", "1,b"], "--batch"),
    (["--variant", "qint9"], "qint8"),
    (["--lengths", "8,512"], "max_seq_length"),
    (["--format", "html"], "--format"),
])
def test_cli_bench_bad_input(tiny_model: Path, tmp_path: Path, args: list[str], message: str,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the console entry point: exit code 2, one ``error:`` line on stderr naming the option, nothing on
    stdout, no bench file written."""
    from test_gate import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "bench", "--model", str(tiny_model), "--cache-dir", str(tmp_path / "cache"),
                             "--results-dir", str(tmp_path / "results"), "--no-memory", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and "EVALSUITE_DEBUG" not in err  # a user error, not an unexpected exception
    assert not (tmp_path / "results").exists()
