"""The comparison report on synthetic stored results: table layout and values in every format, bench columns,
the recommendation, plots, and the CLI."""

from __future__ import annotations

import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from readme_text import REPO, md_rows, readme_section
from test_gate import MODEL, noisy, run_cli, write_variant

from evalsuite.errors import EvalsuiteError
from evalsuite.analysis.gate import GateConfig
from evalsuite.analysis.plots import delta_ci_figure, pareto_figure, pareto_front, per_query_figure
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


# ---------------------------------------------------------------------------------------------------- markdown



def test_a_mixed_build_adds_its_float_nodes_column(results: Path) -> None:
    write_variant(results, "qint8-7bit-xtuned1", {"SciFact": np.full(40, -0.002), "NFCorpus": np.full(30, -0.001)}, size=26_000_000)
    rows = md_rows(render(build_report(results), "md"))
    assert rows[0][:6] == ["Variant", "dtype", "per-chan", "7-bit", "float nodes", "opt"]
    cells = {r[0]: r[4] for r in rows[2:]}
    assert cells["qint8-7bit-xtuned1"] == "tuned1" and cells["qint8"] == "—" and cells["float32"] == "—"
    doc = json.loads(render(build_report(results), "json"))
    by_name = {r["variant"]: r for r in doc["variants"]}
    assert by_name["qint8-7bit-xtuned1"]["float_nodes"] == "tuned1" and by_name["qint8"]["float_nodes"] is None

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
    # qint8 is stored under its batch compositions, all alike here: each task cell adds their spread
    assert q[5] == f"{base['NFCorpus'] - 0.01:.4f} ±0.0000" and q[6] == f"{base['SciFact'] - 0.03:.4f} ±0.0000"
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


class _Tags(HTMLParser):
    """The start tags and the text of an HTML page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_hostile_names(tmp_path: Path) -> None:
    """A model id and a task name (from a user's task YAML) holding markup and ampersands are shown as text."""
    model, task = 'org/<script>alert("x")</script>&co', "R&D <i>"
    write_variant(tmp_path, "qint8", {task: np.full(5, -0.01)}, model_id=model)
    page = render(build_report(tmp_path), "html")
    parsed = _Tags(page)
    assert "script" not in parsed.tags and "i" not in parsed.tags
    text = "".join(parsed.text)
    assert model in text and task in text  # shown, as text
    assert not re.search(r"&(?!(?:amp|lt|gt|quot|#x27|#39);)", page)  # every & starts an entity


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


def stored_deltas(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{variant: {task: per-query deltas against Float32}}`` read from the result files with json and numpy; a variant
    stored under several batch compositions (``<variant>.c<k>.json``) gets each query's mean over them."""
    files: dict[tuple[str, str], list[dict[str, float]]] = {}
    for p in root.glob(f"{SLUG}/*/*.json"):
        files.setdefault((p.parent.name, p.stem.split(".")[0]), []).append(json.loads(p.read_text())["per_query_ndcg_at_10"])
    out: dict[str, dict[str, np.ndarray]] = {}
    for (task, variant), draws in files.items():
        [base] = files[(task, "float32")]
        if variant != "float32":
            out.setdefault(variant, {})[task] = np.array([np.mean([d[q] for d in draws]) - base[q] for q in sorted(base)])
    return out


def _errorbars(ax: object) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{label: {variant: (x, bar start, bar end)}}`` of a horizontal errorbar plot; variants from the y tick labels."""
    names = {round(t): label.get_text() for t, label in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)}  # type: ignore[attr-defined]
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for c in ax.containers:  # type: ignore[attr-defined]
        xs, ys = c.lines[0].get_xdata(), c.lines[0].get_ydata()
        bars = c.lines[2][0].get_segments()
        out[c.get_label()] = {names[round(y)]: (float(x), float(bar[0][0]), float(bar[1][0]))
                              for x, y, bar in zip(xs, ys, bars, strict=True)}
    return out


def test_plots_show_the_report_numbers(results: Path) -> None:
    """What the figures draw, read back from their artists, against numpy on the stored per-query scores."""
    write_bench(results, {"float32": 1.0, "qint8": 2.6, "float16": 0.9, "qint8-pc-7bit": 2.2})
    report = build_report(results)
    deltas = stored_deltas(results)
    comparisons = {r.name: r.comparison for r in report.rows}

    # Forest plot: each dot is the mean delta of a task (or the macro mean), each bar its CI.
    ax = delta_ci_figure(report).axes[0]
    drawn = _errorbars(ax)
    assert set(drawn) == {"NFCorpus", "SciFact", "mean"}
    for variant, by_task in deltas.items():
        for scope in drawn:
            expected = np.mean([d.mean() for d in by_task.values()]) if scope == "mean" else by_task[scope].mean()
            c = comparisons[variant].mean if scope == "mean" else comparisons[variant].tasks[scope]
            x, start, end = drawn[scope][variant]
            assert x == pytest.approx(expected, abs=1e-12)
            assert (start, end) == pytest.approx((c.ci_low, c.ci_high), abs=1e-12)  # type: ignore[union-attr]
    assert drawn["SciFact"]["qint8"] == pytest.approx((-0.03, -0.03, -0.03), abs=1e-12)  # constant: a point CI
    assert drawn["mean"]["qint8"] == pytest.approx((-0.02, -0.02, -0.02), abs=1e-12)
    assert any(list(line.get_xdata()) == [-0.01, -0.01] for line in ax.lines)  # the gate's -max_drop

    # Per-query plot: per task, each variant's median delta and its better/worse/equal counts.
    figure = per_query_figure(report)
    names = {round(t): label.get_text() for t, label in zip(figure.axes[0].get_yticks(), figure.axes[0].get_yticklabels(), strict=True)}
    assert sorted(names.values()) == sorted(deltas)
    for ax in figure.axes:  # one per task, sharing the first one's y axis
        task = ax.get_title().split(" (")[0]
        medians = {names[round(float(np.mean(line.get_ydata())))]: line.get_xdata()[0]
                   for line in ax.lines if line.get_color() == "tab:orange"}
        assert medians == pytest.approx({v: np.median(d[task]) for v, d in deltas.items()}, abs=1e-12)
        counts = {names[round(t.xy[1] + 0.36)]: tuple(int(n) for n in re.findall(r"\d+", t.get_text())) for t in ax.texts}
        assert counts == {v: (int((d[task] > 1e-12).sum()), int((d[task] < -1e-12).sum()), int((np.abs(d[task]) <= 1e-12).sum()))
                          for v, d in deltas.items()}

    # Pareto plot: (speedup from the bench, mean delta) per variant, the front, the recommendation in bold.
    ax = pareto_figure(report).axes[0]
    line = ax.containers[0].lines[0]
    points = dict(zip(line.get_xdata(), line.get_ydata(), strict=True))
    speed = {"float32": 1.0, "qint8": 2.6, "float16": 0.9, "qint8-pc-7bit": 2.2}
    mean_delta = {v: float(np.mean([d.mean() for d in by_task.values()])) for v, by_task in deltas.items()} | {"float32": 0.0}
    assert points == pytest.approx({speed[v]: mean_delta[v] for v in speed}, abs=1e-12)
    front = [v for v in speed if not any(speed[w] >= speed[v] and mean_delta[w] >= mean_delta[v]
                                         and (speed[w], mean_delta[w]) != (speed[v], mean_delta[v]) for w in speed)]
    [front_line] = [line for line in ax.lines if line.get_label() == "Pareto front"]
    assert sorted(front_line.get_xdata()) == sorted(speed[v] for v in front)
    bold = [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"]
    assert bold == [f"{report.recommended} (recommended)"] and report.recommended == "qint8-pc-7bit"


def test_cli_report_plots_writes_those_figures(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`report --plots` writes PNGs pixel for pixel equal to the figures checked above (the Pareto plot only with
    bench results)."""
    import matplotlib.image as mpimg

    code, _, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "--plots", str(tmp_path / "a"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["delta_ci.png", "per_query_delta.png"]
    write_bench(results, {"float32": 1.0, "qint8": 2.0, "float16": 0.9})
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "--plots", str(tmp_path / "b"))
    assert code == 0, err
    report = build_report(results)
    for name, figure in (("delta_ci", delta_ci_figure), ("per_query_delta", per_query_figure), ("pareto", pareto_figure)):
        path = tmp_path / "b" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG and f"wrote {path}" in err
        buffer = io.BytesIO()
        figure(report).savefig(buffer, format="png")
        buffer.seek(0)
        assert np.array_equal(mpimg.imread(path), mpimg.imread(buffer, format="png")), name


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


# ---------------------------------------------------------------------------------------------------- README = results/

COMMITTED = REPO / "results"
DEFAULT_SLUG = "sentence-transformers__all-MiniLM-L6-v2"


def one_line(text: str) -> str:
    return " ".join(text.split())


def names(listed: str) -> list[str]:
    """``a, b and c`` -> ``[a, b, c]``."""
    return [n for n in re.split(r",\s*|\s+and\s+", listed.strip()) if n]


def committed(variant: str, task: str, root: Path = COMMITTED) -> dict[str, float]:
    return json.loads((root / DEFAULT_SLUG / task / f"{variant}.json").read_text())["per_query_ndcg_at_10"]


def test_readme_results_table_is_the_report_of_the_committed_results(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every cell of README's results table, and its gate and recommendation sentences, as `evalsuite report
    --format md` prints them today from the committed results/ (no model or data needed)."""
    code, committed_report, err = run_cli(monkeypatch, capsys, "report", "--format", "md", "--results-dir", str(COMMITTED),
                                             "--model", "sentence-transformers/all-MiniLM-L6-v2")
    assert code == 0, err
    section = readme_section("## Results: all-MiniLM-L6-v2, seven variants, SciFact and NFCorpus")
    readme_rows, report_rows = md_rows(section), md_rows(committed_report)
    assert len(readme_rows) == len(report_rows) == 2 + 7
    assert readme_rows[0] == report_rows[0]  # header
    for readme_row, report_row in zip(readme_rows[2:], report_rows[2:], strict=True):
        assert readme_row == report_row, readme_row[0]

    prose, printed = one_line(section), one_line(committed_report)
    gate_readme = re.search(r"Gate \(max drop ([\d.]+) NDCG@10 per task, rule (\w+)\): (.+?) pass; (.+?) fail\.", prose)
    gate_report = re.search(r"Gate \(max drop ([\d.]+) NDCG@10 per task, rule (\w+)\): pass: (.+?); fail: (.+?)\.", printed)
    assert gate_readme and gate_report
    assert (float(gate_readme[1]), gate_readme[2]) == (float(gate_report[1]), gate_report[2])
    assert (names(gate_readme[3]), names(gate_readme[4])) == (names(gate_report[3]), names(gate_report[4]))

    rec_readme = re.search(r"Recommended: \*\*([\w-]+)\*\*, the fastest variant that passes the gate "
                           r"\(([\d.]+x) Float32 at (\d+) tokens, batch (\d+)\)", prose)
    rec_report = re.search(r"Recommended: \*\*([\w-]+)\*\*: the fastest variant that passes the gate, ([\d.]+x) Float32 "
                           r"at (\d+) tokens, batch (\d+)", printed)
    assert rec_readme and rec_report and rec_readme.groups() == rec_report.groups()
    close = re.search(r"([\w-]+) is within timing noise of it \(([\d.]+x)\)", prose)
    assert close and {r[0]: r[-1] for r in report_rows[2:]}[close[1]] == close[2]


def test_readme_claims_about_the_committed_results() -> None:
    """The numbers in the prose under the table and in the batch-policy table, from the result files by hand."""
    prose = one_line(readme_section("## Results: all-MiniLM-L6-v2, seven variants, SciFact and NFCorpus"))
    tasks = ("SciFact", "NFCorpus")
    base = {t: committed("float32", t) for t in tasks}
    mean = {t: math.fsum(base[t].values()) / len(base[t]) for t in tasks}
    published = re.search(r"SciFact (\d\.\d+) and NFCorpus (\d\.\d+)", prose)
    assert published and (f"{mean['SciFact']:.5f}", f"{mean['NFCorpus']:.5f}") == published.groups()
    total = sum(len(base[t]) for t in tasks)
    assert f"every one of the {total} queries" in prose
    changed = sum(committed("float16", t)[q] != v for t in tasks for q, v in base[t].items())
    assert f"Float16 changes the NDCG@10 of {changed} of {total} queries" in prose

    def macro_relative(variant: str) -> float:
        v = {t: committed(variant, t) for t in tasks}
        macro = np.mean([np.mean([v[t][q] - base[t][q] for q in base[t]]) for t in tasks])
        return float(100 * macro / np.mean(list(mean.values())))

    assert f"costs {-macro_relative('qint8'):.1f}% (qint8), or {-macro_relative('qint8-7bit'):.1f}% once" in prose
    scifact = np.mean([committed("qint8-pc-7bit", "SciFact")[q] - v for q, v in base["SciFact"].items()])
    assert f"above Float32 on SciFact ({scifact:+.4f})" in prose

    # Batch policies: qint8-pc-7bit under each, Float32 identical under all three.
    rows = {r[0].split("`")[1]: r for r in md_rows(readme_section("**Batch policy of dynamic quantization.**"))[2:]}
    roots = {"docs32-q1-length": COMMITTED, "docs1-q1": COMMITTED / "policy" / "docs1-q1",
             "docs32-q32": COMMITTED / "policy" / "docs32-q32"}
    assert set(rows) == set(roots)
    default = {t: committed("qint8-pc-7bit", t) for t in tasks}
    for policy, root in roots.items():
        for t in tasks:
            assert committed("float32", t, root) == base[t], (policy, t)
        scores = {t: committed("qint8-pc-7bit", t, root) for t in tasks}
        for column, t in ((1, "SciFact"), (2, "NFCorpus")):
            value = math.fsum(scores[t].values()) / len(scores[t])
            shift = value - math.fsum(default[t].values()) / len(default[t])
            cell = rows[policy][column].replace("−", "-")
            assert cell == (f"{value:.5f}" if root == COMMITTED else f"{value:.5f} ({shift:+.4f})"), (policy, t)
        differ = [sum(scores[t][q] != default[t][q] for q in default[t]) for t in tasks]
        if policy == "docs1-q1":
            assert rows[policy][3] == f"{differ[0]} / {differ[1]}"
        if policy == "docs32-q32":  # only query embeddings change: the whole corpus came from the embedding cache
            for t in tasks:
                record = json.loads((root / DEFAULT_SLUG / t / "qint8-pc-7bit.json").read_text())
                assert record["timings"]["texts_from_cache"] == record["task"]["n_documents"]


def test_readme_base_model_table_is_the_report_of_the_committed_results(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The all-mpnet-base-v2 quality table, cell for cell, as `evalsuite report` prints it from results/."""
    code, printed, err = run_cli(monkeypatch, capsys, "report", "--format", "md", "--results-dir", str(COMMITTED),
                                 "--model", "all-mpnet-base-v2-b9cd9e03")
    assert code == 0, err
    section = readme_section("## A base-size model: all-mpnet-base-v2 beside all-MiniLM-L6-v2")
    readme = md_rows(section[section.index("### Quality"):section.index("### Speed")])
    assert readme == md_rows(printed)
