"""Local BEIR folders: parsing real-world files, and one-line ``file:line`` errors for every malformed input.

Also the task registry that points at those folders (case-insensitive names, FiQA's layout, defaults).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import make_beir

from evalsuite.data.beir import read_beir
from evalsuite.errors import EvalsuiteError
from evalsuite.data.loading import task_unavailable
from evalsuite.data.tasks import default_tasks, find_task

CORPUS = [{"_id": "d1", "title": "Heart", "text": "heart diet"},
          {"_id": "d2", "title": "", "text": "stock market"},
          {"_id": "d3", "text": "gene virus"}]
QUERIES = [{"_id": "q1", "text": "heart"}, {"_id": "q2", "text": "market"}, {"_id": "q3", "text": "nobody judged me"}]
QRELS = ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q2\td2\t1", "q2\td3\t0"]


def write_beir(folder: Path, corpus: list[str] | None = None, queries: list[str] | None = None,
               qrels: list[str] | None = None, *, nl: str = "\n") -> Path:
    """A BEIR folder from raw lines (defaults: the small valid example above)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    files = {"corpus.jsonl": corpus if corpus is not None else [json.dumps(r) for r in CORPUS],
             "queries.jsonl": queries if queries is not None else [json.dumps(r) for r in QUERIES],
             "qrels/test.tsv": qrels if qrels is not None else QRELS}
    for name, lines in files.items():
        (folder / name).write_text("".join(line + nl for line in lines), encoding="utf-8", newline="")
    return folder


def error_of(folder: Path) -> str:
    with pytest.raises(EvalsuiteError) as info:
        read_beir(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- parsing ----------------------------------------------------------------------------------

def test_reads_the_example(tmp_path: Path) -> None:
    data = read_beir(write_beir(tmp_path / "b"))
    assert data.corpus == {"d1": {"title": "Heart", "text": "heart diet"}, "d2": {"title": "", "text": "stock market"},
                           "d3": {"title": "", "text": "gene virus"}}
    assert data.queries == {"q1": "heart", "q2": "market"}  # q3 has no judgements: dropped, as mteb does
    assert data.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d3": 0}}


def test_synthetic_folder_matches_an_independent_parse(tmp_path: Path) -> None:
    """make_beir's CRLF files with numeric ids, parsed here with plain json/csv logic, give the same data."""
    folder = make_beir(tmp_path / "s", crlf=True, numeric_ids=True)
    assert b"\r\n" in (folder / "corpus.jsonl").read_bytes()
    data = read_beir(folder)
    raw_docs = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    assert all(isinstance(r["_id"], int) for r in raw_docs)
    assert data.corpus == {str(r["_id"]): {"title": r["title"], "text": r["text"]} for r in raw_docs}
    expected_qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        expected_qrels.setdefault(q, {})[d] = int(s)
    assert data.qrels == expected_qrels
    raw_queries = {r["_id"]: r["text"] for r in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
    assert "unjudged" in raw_queries and "unjudged" not in data.queries
    assert data.queries == {q: t for q, t in raw_queries.items() if q in expected_qrels}
    assert all(isinstance(k, str) for k in data.corpus) and all(not t.endswith("\r") for t in data.queries.values())


@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_line_endings(tmp_path: Path, nl: str) -> None:
    assert read_beir(write_beir(tmp_path / "b", nl=nl)) == read_beir(write_beir(tmp_path / "ref"))


def test_stray_whitespace_blank_lines_bom_and_numeric_ids(tmp_path: Path) -> None:
    corpus = ["\ufeff" + json.dumps({"_id": 7, "title": "Heart", "text": "heart diet"}), "", "   ",
              json.dumps({"_id": " 007 ", "text": "stock market"}) + "   ",
              "\t" + json.dumps({"_id": 7.5, "text": "gene virus"})]
    queries = [json.dumps({"_id": 1, "text": " heart "}), "", json.dumps({"_id": "q2 ", "text": "market"})]
    qrels = ["\ufeffquery-id\tcorpus-id\tscore", "", " 1 \t 7\t 2 ", "q2\t007\t1.0", "q2\t7.5\t0  ", "   "]
    folder = write_beir(tmp_path / "b", corpus, queries, qrels, nl="\r\n")
    data = read_beir(folder)
    assert data.corpus == {"7": {"title": "Heart", "text": "heart diet"}, "007": {"title": "", "text": "stock market"},
                           "7.5": {"title": "", "text": "gene virus"}}
    assert data.queries == {"1": " heart ", "q2": "market"}  # ids are stripped, text is kept as written
    assert data.qrels == {"1": {"7": 2}, "q2": {"007": 1, "7.5": 0}}


def test_qrels_without_header(tmp_path: Path) -> None:
    with_header = read_beir(write_beir(tmp_path / "a"))
    without = read_beir(write_beir(tmp_path / "b", qrels=QRELS[1:]))
    assert without == with_header


def test_gzipped_corpus(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b", nl="\r\n")
    plain = read_beir(folder)
    raw = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress(raw))
    (folder / "corpus.jsonl").unlink()
    assert read_beir(folder) == plain


def test_other_splits(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    (folder / "qrels" / "dev.tsv").write_text("q3\td3\t1\n")
    assert read_beir(folder, split="dev").queries == {"q3": "nobody judged me"}


# --- errors: one line, naming the file and line ---------------------------------------------

def _line(text: str, *, at: int) -> list[str]:
    """The example corpus with ``text`` as line ``at`` (1-based)."""
    lines = [json.dumps(r) for r in CORPUS]
    lines.insert(at - 1, text)
    return lines


@pytest.mark.parametrize(("corpus", "where", "what"), [
    (_line('{"_id": "x", "text": ', at=2), "corpus.jsonl:2", "invalid JSON"),
    (_line("not json at all", at=4), "corpus.jsonl:4", "invalid JSON"),
    (_line('["_id", "text"]', at=1), "corpus.jsonl:1", "expected a JSON object"),
    (_line('{"text": "no id"}', at=3), "corpus.jsonl:3", "missing or invalid '_id'"),
    (_line('{"_id": "d9"}', at=2), "corpus.jsonl:2", "missing or invalid 'text'"),
    (_line('{"_id": "d9", "text": ["a"]}', at=2), "corpus.jsonl:2", "missing or invalid 'text'"),
    (_line('{"_id": "d9", "text": "a", "title": 5}', at=2), "corpus.jsonl:2", "'title' must be a string"),
    (_line('{"_id": "d1", "text": "again"}', at=4), "corpus.jsonl:4", "duplicate document id 'd1'"),
    (_line('{"_id": 1, "text": "a"}', at=1) + ['{"_id": "1", "text": "b"}'], "corpus.jsonl:5", "duplicate document id '1'"),
])
def test_corpus_errors(tmp_path: Path, corpus: list[str], where: str, what: str) -> None:
    folder = write_beir(tmp_path / "b", corpus=corpus, nl="\r\n")
    message = error_of(folder)
    assert f"{folder / where}: " in message and what in message


@pytest.mark.parametrize(("queries", "where", "what"), [
    (['{"_id": "q1", "text": "heart"}', "{oops}"], "queries.jsonl:2", "invalid JSON"),
    (['{"_id": "q1"}'], "queries.jsonl:1", "missing or invalid 'text'"),
    (['{"_id": "q1", "text": "a"}', '{"_id": "q2", "text": "b"}', '{"_id": "q1", "text": "c"}'],
     "queries.jsonl:3", "duplicate query id 'q1'"),
])
def test_queries_errors(tmp_path: Path, queries: list[str], where: str, what: str) -> None:
    folder = write_beir(tmp_path / "b", queries=queries)
    message = error_of(folder)
    assert f"{folder / where}: " in message and what in message


@pytest.mark.parametrize(("qrels", "where", "what"), [
    ([*QRELS, "q9\td1\t1"], "test.tsv:5", "query id 'q9' is not in queries.jsonl"),
    ([*QRELS[:2], "q1\td99\t1"], "test.tsv:3", "document id 'd99' is not in the corpus"),
    (["q1\td1\t1", "q1 d2 1"], "test.tsv:2", "expected 3 tab-separated columns"),
    (["q1\td1"], "test.tsv:1", "expected 3 tab-separated columns (query-id, corpus-id, score), got 2"),
    (["q1\td1\thigh"], "test.tsv:1", "score 'high' is not a number"),
    (["q1\td1\tinf"], "test.tsv:1", "score 'inf' is not a number"),
    (["query-id\tcorpus-id\tscore", "q1\td1\t1", "", "query-id\tcorpus-id\tscore"], "test.tsv:4", "not a number"),
])
def test_qrels_errors(tmp_path: Path, qrels: list[str], where: str, what: str) -> None:
    folder = write_beir(tmp_path / "b", qrels=qrels, nl="\r\n")
    message = error_of(folder)
    assert f"{folder / 'qrels' / where}: " in message and what in message


@pytest.mark.parametrize("corpus", [[], ["", "  ", "\t"]])
def test_empty_corpus(tmp_path: Path, corpus: list[str]) -> None:
    folder = write_beir(tmp_path / "b", corpus=corpus)
    assert error_of(folder) == f"{folder / 'corpus.jsonl'}: empty corpus (no documents)"


def test_no_judgements(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b", qrels=QRELS[:1])
    assert error_of(folder) == f"{folder / 'qrels' / 'test.tsv'}: no relevance judgements"


@pytest.mark.parametrize(("remove", "named"), [
    ("corpus.jsonl", "corpus.jsonl"), ("queries.jsonl", "queries.jsonl"), ("qrels/test.tsv", "qrels/test.tsv")])
def test_missing_files_are_named(tmp_path: Path, remove: str, named: str) -> None:
    folder = write_beir(tmp_path / "b")
    (folder / remove).unlink()
    message = error_of(folder)
    assert message.startswith(f"{folder}: missing {named}")


def test_missing_folder(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nowhere") == f"BEIR folder not found: {tmp_path / 'nowhere'}"


def test_invalid_utf8_names_file_line_and_byte(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    good = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl").write_bytes(good + b'{"_id": "d4", "text": "caf\xe9"}\n')
    message = error_of(folder)
    assert message.startswith(f"{folder / 'corpus.jsonl'}:4: not valid UTF-8 (byte 0xe9")


def test_invalid_utf8_in_qrels(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    (folder / "qrels" / "test.tsv").write_bytes(b"q1\td1\t1\r\nq2\td\xff2\t1\r\n")
    assert error_of(folder).startswith(f"{folder / 'qrels' / 'test.tsv'}:2: not valid UTF-8 (byte 0xff")


def test_valid_non_ascii_text_is_kept(tmp_path: Path) -> None:
    corpus = [json.dumps({"_id": "d1", "text": "café – naïve 中文"}, ensure_ascii=False), json.dumps(CORPUS[1]), json.dumps(CORPUS[2])]
    assert read_beir(write_beir(tmp_path / "b", corpus=corpus)).corpus["d1"]["text"] == "café – naïve 中文"


def test_not_a_gzip_file(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    (folder / "corpus.jsonl").rename(folder / "corpus.jsonl.gz")  # named .gz but plain text
    assert error_of(folder).startswith(f"{folder / 'corpus.jsonl.gz'}: not a gzip file")


def test_truncated_gzip_file(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "b")
    lines = [json.dumps({"_id": f"d{i}", "text": f"document number {i} " * 20}) for i in range(1, 400)]
    packed = gzip.compress(("\n".join(lines) + "\n").encode())
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    message = error_of(folder)
    assert re.match(rf"{re.escape(str(folder / 'corpus.jsonl.gz'))}:\d+: damaged or truncated gzip data", message)


# --- tasks: names, defaults, FiQA's layout ----------------------------------------------------

@pytest.mark.parametrize(("name", "task"), [
    ("scifact", "SciFact"), ("SCIFACT", "SciFact"), (" SciFact ", "SciFact"), ("nfcorpus", "NFCorpus"),
    ("FIQA2018", "FiQA2018"), ("fiqa", "FiQA2018"), ("FiQA", "FiQA2018")])
def test_task_names_are_case_insensitive(name: str, task: str) -> None:
    assert find_task(name).name == task


def test_default_tasks() -> None:
    assert sorted(s.name for s in default_tasks()) == ["FiQA2018", "NFCorpus", "SciFact"]
    assert {s.name: s.beir_folder for s in default_tasks()} == {"FiQA2018": "fiqa", "NFCorpus": "nfcorpus", "SciFact": "scifact"}


def test_unknown_task_suggests(tmp_path: Path) -> None:
    with pytest.raises(EvalsuiteError, match=r"unknown task 'scifakt'; did you mean 'SciFact'\?"):
        find_task("scifakt")


def test_a_beir_folder_path_is_a_task(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "mydata")
    spec = find_task(str(folder))
    assert spec.name.startswith("mydata-") and spec.local_folder(None) == folder.resolve()
    other = write_beir(tmp_path / "elsewhere" / "mydata")  # same folder name, other path: another task name
    assert find_task(str(other)).name.startswith("mydata-") and find_task(str(other)).name != spec.name
    assert find_task(str(folder)).name == spec.name  # stable
    assert task_unavailable(spec, None) is None


def _fiqa_layout(data: Path, *, with_corpus: bool) -> Path:
    """FiQA's BEIR layout, as ../shared/data/beir/fiqa has it (queries and qrels; the corpus only if asked)."""
    folder = make_beir(data / "fiqa", n_docs=30, n_queries=6, seed=3, crlf=True)
    if not with_corpus:
        (folder / "corpus.jsonl").unlink()
    return folder


def test_fiqa_without_corpus_names_the_missing_file(tmp_path: Path) -> None:
    folder = _fiqa_layout(tmp_path / "data", with_corpus=False)
    spec = find_task("fiqa")
    assert spec.local_folder(tmp_path / "data") == folder
    assert task_unavailable(spec, tmp_path / "data") == f"{folder}: missing corpus.jsonl"
    with pytest.raises(EvalsuiteError, match=r"missing corpus\.jsonl \(corpus\.jsonl or corpus\.jsonl\.gz\)"):
        read_beir(folder)


def test_fiqa_layout_reads(tmp_path: Path) -> None:
    folder = _fiqa_layout(tmp_path / "data", with_corpus=True)
    spec = find_task("FiQA2018")
    assert task_unavailable(spec, tmp_path / "data") is None
    data = read_beir(spec.local_folder(tmp_path / "data"), spec.split)  # type: ignore[arg-type]
    assert len(data.corpus) == 30 and len(data.queries) == 6
    # The gzipped corpus FiQA is often shipped as works too.
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress((folder / "corpus.jsonl").read_bytes()))
    (folder / "corpus.jsonl").unlink()
    assert task_unavailable(spec, tmp_path / "data") is None
    assert read_beir(folder).corpus == data.corpus


def test_real_fiqa_folder_if_present_lacks_only_the_corpus(tmp_path: Path) -> None:
    """The shared FiQA copy has no corpus: a copy of its layout (queries + qrels, no corpus) must say so."""
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "fiqa"
    target = tmp_path / "data" / "fiqa"
    if (real / "queries.jsonl").is_file() and not (real / "corpus.jsonl").exists():
        (target / "qrels").mkdir(parents=True)
        shutil.copy(real / "qrels" / "test.tsv", target / "qrels" / "test.tsv")
        shutil.copy(real / "queries.jsonl", target / "queries.jsonl")
    else:  # no shared data here: the same layout, built
        _fiqa_layout(tmp_path / "data", with_corpus=False)
    assert task_unavailable(find_task("fiqa"), tmp_path / "data") == f"{target}: missing corpus.jsonl"
