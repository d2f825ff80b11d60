"""The comparison report on synthetic stored results: table layout and values in every format, bench columns,
the recommendation, plots, and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_gate import MODEL, noisy, run_cli, write_variant

from evalsuite.errors import EvalsuiteError
from evalsuite.analysis.gate import GateConfig
from evalsuite.analysis.plots import pareto_front, write_plots
from evalsuite.analysis.render import render
from evalsuite.analysis.report import bench_point, build_report
from evalsuite.bench import BenchResult, Machine, Measurement, VariantInfo, read_bench, save_bench
from evalsuite.results import ResultStore

SLUG = MODEL.replace("/", "__")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_variant(root, "qint8", {"SciFact": np.full(40, -0.03), "NFCorpus": np.full(30, -0.01)}, size=23_000_000)
    write_variant(root, "float16", {"SciFact": np.zeros(40), "NFCorpus": np.zeros(30)}, size=45_000_000)
    write_variant(root, "qint8-pc-7bit", {"SciFact": noisy(-0.004, 0.01, 40, 1), "NFCorpus": noisy(-0.002, 0.01, 30, 2)}, size=23_000_000)
    write_variant(root, "float32-o2", {"SciFact": noisy(0.0, 0.05, 40, 3), "NFCorpus": noisy(0.0, 0.05, 30, 4)}, size=90_000_000)
    return root


def float32_means(root: Path) -> dict[str, float]:
    store = ResultStore(root)
    return {t: float(np.mean(list(store.get(SLUG, t, "float32").per_query_ndcg_at_10.values()))) for t in ("NFCorpus", "SciFact")}  # type: ignore[union-attr]


def write_bench(root: Path, speedups: dict[str, float], length: int = 128, weights: str = "w" * 64) -> Path:
    """A complete bench document, written by the schema's own writer (``save_bench``)."""
    measurements = [Measurement(v, n, 1, 10.0 / s, 9.0 / s, 11.0 / s, 10.0, s, 1000.0 * s, 3)
                    for n in (length, 512) for v, s in speedups.items()]
    machine = Machine("Test CPU", "", 2, {}, False, 2, "1.0")
    result = BenchResult(MODEL, SLUG, weights, machine, (length, 512), (1,), 3, 1, tuple(speedups), (), measurements,
                         {"qint8": VariantInfo(22_000_000, "x", 100.0, 50.0, "requested")}, [])
    return save_bench(result, root)


def md_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


# ---------------------------------------------------------------------------------------------------- markdown


def test_markdown_layout_and_values(results: Path) -> None:
    text = render(build_report(results), "md")
    rows = md_rows(text)
    assert rows[0] == ["Variant", "dtype", "per-chan", "7-bit", "opt", "NFCorpus", "SciFact", "Mean", "Δ", "Δ %", "95% CI", "sig"]
    assert rows[1][0].startswith(":-") and rows[1][5].endswith("-:")
    assert len({len(r) for r in rows}) == 1  # every line has the same number of cells
    # Float32 first, then the reference table's order (float16, qint8-pc-7bit, qint8), then the others.
    assert [r[0] for r in rows[2:]] == ["float32", "float16", "qint8-pc-7bit", "qint8", "float32-o2"]
    base = float32_means(results)
    by_name = {r[0]: r for r in rows[2:]}
    f32 = by_name["float32"]
    assert f32[1:5] == ["float32", "—", "—", "1"]
    assert f32[5:8] == [f"{base['NFCorpus']:.4f}", f"{base['SciFact']:.4f}", f"{(base['NFCorpus'] + base['SciFact']) / 2:.4f}"]
    assert f32[8:] == ["—"] * 4
    q = by_name["qint8"]
    assert q[1:5] == ["qint8", "no", "no", "1"]
    assert q[5] == f"{base['NFCorpus'] - 0.01:.4f}" and q[6] == f"{base['SciFact'] - 0.03:.4f}"
    assert q[8:10] == ["-0.0200", f"{100 * -0.02 / ((base['NFCorpus'] + base['SciFact']) / 2):+.2f}%"]
    assert q[10] == "[-0.0200, -0.0200]" and q[11] == "*"  # constant deltas: a point CI, p = 1/10001
    assert by_name["qint8-pc-7bit"][1:5] == ["qint8", "yes", "yes", "1"]
    assert by_name["float32-o2"][4] == "2" and by_name["float32-o2"][11] == ""  # mean delta 0: not significant
    assert "Gate (max drop 0.0100 NDCG@10 per task, rule point): pass: float16, qint8-pc-7bit, float32-o2; fail: qint8." in text
    assert "No recommendation" not in text and "Speedup" not in text  # no bench: no speed columns


def test_digits_and_variant_selection(results: Path) -> None:
    report = build_report(results, variants=["qint8", "float16"])
    assert [r.name for r in report.rows] == ["float32", "qint8", "float16"]
    assert md_rows(render(report, "md", digits=5))[3][8] == "-0.02000"
    with pytest.raises(EvalsuiteError, match="no results for quint8"):
        build_report(results, variants=["quint8"])


def test_partial_results_leave_dashes_and_a_note(results: Path) -> None:
    ResultStore(results).path(SLUG, "SciFact", "qint8").unlink()
    report = build_report(results)
    row = {r[0]: r for r in md_rows(render(report, "md"))[2:]}["qint8"]
    assert row[6] == "—" and row[7:] == ["—"] * 5
    assert any("qint8 has no result on SciFact" in n for n in report.notes)


# ---------------------------------------------------------------------------------------------------- csv, json, html


def test_csv_has_the_numbers(results: Path) -> None:
    df = pd.read_csv(io.StringIO(render(build_report(results), "csv")))
    assert list(df.columns[:8]) == ["variant", "dtype", "per_channel", "reduce_range", "opt_level", "NFCorpus", "SciFact", "mean"]
    q = df.set_index("variant").loc["qint8"]
    base = float32_means(results)
    assert q["SciFact"] == pytest.approx(base["SciFact"] - 0.03, abs=1e-12)
    assert q["delta"] == pytest.approx(-0.02, abs=1e-12)
    assert (q["better"], q["worse"], q["equal"]) == (0, 70, 0)
    assert q["gate"] == "fail" and bool(q["significant"])


def test_json_document(results: Path) -> None:
    doc = json.loads(render(build_report(results, cfg=GateConfig(max_drop=0.005, rule="ci")), "json"))
    assert doc["schema"] == "evalsuite.report/1" and doc["model"] == {"id": MODEL, "slug": SLUG}
    assert doc["tasks"] == [{"name": "NFCorpus", "n_queries": 30}, {"name": "SciFact", "n_queries": 40}]
    assert doc["statistics"]["alpha"] == 0.05 and doc["statistics"]["n_resamples"] == 10_000
    by_name = {v["variant"]: v for v in doc["variants"]}
    q = by_name["qint8"]
    assert q["tasks"]["SciFact"]["mean_delta"] == pytest.approx(-0.03)
    assert q["mean"]["mean_delta"] == pytest.approx(-0.02)
    assert q["gate"]["outcome"] == "fail" and q["speed"] is None
    assert doc["gate"]["rule"] == "ci" and doc["recommended"] is None and doc["speed"] is None


def test_html_is_a_static_page_with_the_table(results: Path) -> None:
    text = render(build_report(results), "html")  # the page itself: tests/test_html_export.py
    assert text.startswith("<!doctype html>") and "<table" in text and "<script" not in text
    assert '<th scope="row" class="txt variant">qint8-pc-7bit</th>' in text and "org/tiny-model" in text


def test_unknown_format_is_an_error(results: Path) -> None:
    with pytest.raises(EvalsuiteError, match="unknown format 'xml'"):
        render(build_report(results), "xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- bench and recommendation


def test_speed_columns_and_recommendation(results: Path) -> None:
    write_bench(results, {"float32": 1.0, "float16": 0.8, "qint8-pc-7bit": 2.2, "qint8": 2.6, "float32-o2": 1.1})
    report = build_report(results)
    rows = md_rows(render(report, "md"))
    assert rows[0][-2:] == ["Size (MB)", "Speedup @128 tok, b1"]
    by_name = {r[0]: r for r in rows[2:]}
    assert by_name["qint8"][-2:] == ["22.0", "2.60x"]  # bench size wins over the result's
    assert by_name["float16"][-2:] == ["45.0", "0.80x"]
    # qint8 is faster but fails the gate: the fastest passing variant is qint8-pc-7bit.
    assert report.recommended == "qint8-pc-7bit"
    assert "Recommended: **qint8-pc-7bit**" in render(report, "md")
    assert any(n.startswith("qint8: the bench timed another ONNX file") for n in report.notes)  # sha "x" != "onnx-qint8"
    assert "on Test CPU, no AVX2, no VNNI, no native fp16, 2 threads, onnxruntime 1.0." in render(report, "md")
    assert build_report(results, cfg=GateConfig(max_drop=0.05)).recommended == "qint8"
    assert build_report(results, cfg=GateConfig(max_drop=0.001)).recommended == "float32-o2"  # mean delta 0, faster than float32


def test_bench_at_another_length_falls_back_with_a_note(results: Path) -> None:
    path = write_bench(results, {"float32": 1.0, "qint8": 2.0}, length=256)
    bench, notes = bench_point(read_bench(path), path, 128, 1)
    assert bench is not None and bench.length == 256 and bench.speeds["qint8"].speedup == 2.0
    assert any("no bench results at 128 tokens" in n for n in notes)
    assert bench_point(read_bench(path), path, 128, 8)[0] is None  # no batch 8 at all


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "unreadable"), ('{"schema": "other/1"}', "not an evalsuite.bench/1 file"), ("[]", "not an evalsuite.bench/1 file"),
    ('{"schema": "evalsuite.bench/1", "results": []}', "incomplete evalsuite.bench/1 document"),
])
def test_damaged_bench_is_a_note_by_default_and_an_error_when_named(results: Path, content: str, problem: str) -> None:
    path = results / SLUG / "bench.json"
    path.write_text(content)
    report = build_report(results)
    assert report.bench is None and any(problem in n and str(path) in n for n in report.notes)
    with pytest.raises(EvalsuiteError, match=problem):
        build_report(results, bench_file=path)


def test_bench_of_other_weights_is_ignored(results: Path) -> None:
    path = write_bench(results, {"float32": 1.0, "qint8": 2.0}, weights="z" * 64)
    report = build_report(results)
    assert report.bench is None and any("other weights" in n for n in report.notes)
    with pytest.raises(EvalsuiteError, match="other weights"):
        build_report(results, bench_file=path)


def test_pareto_front_hand_computed() -> None:
    # (speedup, delta): (2.0, -0.03) is dominated by (2.5, -0.01).
    assert pareto_front([(1.0, 0.0), (2.0, -0.03), (2.5, -0.01), (3.0, -0.05), (0.9, 0.0)]) == [0, 2, 3]


# ---------------------------------------------------------------------------------------------------- plots and CLI


def test_plots_are_png_files(results: Path, tmp_path: Path) -> None:
    paths = write_plots(build_report(results), tmp_path / "plots")
    assert [p.name for p in paths] == ["delta_ci.png", "per_query_delta.png"]
    write_bench(results, {"float32": 1.0, "qint8": 2.0, "float16": 0.9})
    paths = write_plots(build_report(results), tmp_path / "plots")
    assert [p.name for p in paths] == ["delta_ci.png", "per_query_delta.png", "pareto.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000


def test_cli_report(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results))
    assert code == 0 and out.startswith("| Variant ")
    target = tmp_path / "out" / "table.csv"
    code, out, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "-o", str(target))
    assert code == 0 and out == "" and pd.read_csv(target).shape[0] == 5 and "wrote" in err
    code, out, _ = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "--format", "json")
    assert code == 0 and json.loads(out)["schema"] == "evalsuite.report/1"
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "--format", "pdf")
    assert code == 2 and "--format must be one of md, csv, json, html" in err
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(tmp_path / "none"))
    assert code == 2 and "no results in" in err
