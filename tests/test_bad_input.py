"""About 130 bad inputs against the ``evalsuite`` command on a tiny model: each one must end with exit code 2,
one line on stderr that names the problem (the option and its allowed range, or the file with its line or key),
no traceback, and nothing on stdout.

The inputs are tables by class: command-line options, configuration files (gate and task YAML), the model's own
files, and data files. Every case runs through the console entry point ``evalsuite.cli.main()`` in this process
(tests/clirun.py: ``invoke``), with its own environment and working directory, against one warm cache and one
finished run (module fixtures); a case costs milliseconds. A few cases of each class also run as real subprocesses
(``test_canary_in_a_real_process``): the exit code through the interpreter, and nothing that only a new process
would print. Faults (interrupts, locks, full disks, closed streams) are in test_faults.py.

Example of a case: ``"threads 0": (["run", *RUN, "--threads", "0"], ["--threads must be a whole number >= 1, not 0"])``
runs ``evalsuite run ... --threads 0`` and expects that text in the one error line.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import environment, invoke, one_problem, run
from conftest import make_beir

from evalsuite.analysis.gate import GateConfig
from evalsuite.errors import EvalsuiteError
from evalsuite.models import read_settings


@dataclass(frozen=True)
class World:
    """A tiny model, a small task, a warm cache and a finished run of float32 and qint8; ``bad`` holds the bad inputs."""

    model: Path
    data: Path
    cache: Path
    results: Path
    bad: Path


@pytest.fixture(scope="module")
def world(tiny_model: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    data = root / "data"
    make_beir(data / "scifact", n_docs=40, n_queries=8, crlf=True)
    w = World(tiny_model, data, shared_cache, root / "results", root / "bad")
    done = invoke("run", "-m", tiny_model, "-t", "scifact", "--data-dir", data, "-v", "qint8", "--cache-dir", shared_cache,
                  "--results-dir", w.results)
    assert done.returncode == 0, done.stderr
    w.bad.mkdir()
    _write_bad_inputs(w)
    return w


# --- the cases: (arguments, texts the error line must contain); {model} {data} {bad} {results} are filled in -----

RUN = ["-m", "{model}", "-t", "scifact", "--data-dir", "{data}", "-v", "qint8"]

OPTIONS = {
    "threads 0": (["run", *RUN, "--threads", "0"], ["--threads must be a whole number >= 1, not 0"]),
    "threads -2": (["run", *RUN, "--threads", "-2"], ["--threads must be a whole number >= 1, not -2"]),
    "threads not a number": (["run", *RUN, "--threads", "abc"], ["--threads", "integer"]),
    "batch size 0": (["run", *RUN, "--batch-size", "0"], ["--batch-size must be a whole number >= 1, not 0"]),
    "batch size -3": (["run", *RUN, "--batch-size", "-3"], ["--batch-size must be a whole number >= 1, not -3"]),
    "batch size 1.5": (["run", *RUN, "--batch-size", "1.5"], ["--batch-size", "integer"]),
    "query batch size 0": (["run", *RUN, "--query-batch-size", "0"], ["--query-batch-size must be a whole number >= 1, not 0"]),
    "order": (["run", *RUN, "--order", "shuffled"], ["--order must be one of length, given, not 'shuffled'"]),
    "tasks empty": (["run", *RUN, "--tasks", ""], ["--tasks is empty", "leave --tasks out for the default"]),
    "tasks only commas": (["run", *RUN, "--tasks", " , "], ["--tasks is empty"]),
    "variant empty": (["run", *RUN, "--variant", ""], ["--variant is empty"]),
    "unknown variant": (["run", *RUN, "-v", "qint9"], ["unknown dtype 'qint9'; did you mean 'qint8'?"]),
    "variant option of another kind": (["run", *RUN, "-v", "float16-pc"], ["-pc applies to qint8/quint8/static8 only"]),
    "variant level": (["run", *RUN, "-v", "qint8-o3"], ["optimizer level must be one of 0, 1, 2, 99"]),
    "variant option order": (["run", *RUN, "-v", "qint8-7bit-pc"], ["did you mean 'qint8-pc-7bit'?"]),
    "model empty": (["run", *RUN, "--model", ""], ["--model is empty"]),
    "model folder missing": (["run", *RUN, "--model", "{bad}/no/such/model"], ["model folder not found: {bad}/no/such/model"]),
    "hub model offline": (["run", *RUN, "--model", "no-such-org/no-such-model"],
                          ["cannot get 'no-such-org/no-such-model' from the Hugging Face Hub", "pass a local model folder"]),
    "model without weights": (["run", *RUN, "--model", "{bad}/notamodel"], ["no weights in {bad}/notamodel"]),
    "unknown task": (["run", *RUN, "-t", "scifakt"], ["unknown task 'scifakt'; did you mean 'SciFact'?"]),
    "task without data": (["run", *RUN, "-t", "nfcorpus"], ["task NFCorpus: BEIR folder not found: {data}/nfcorpus"]),
    "tasks dir missing": (["run", *RUN, "--tasks-dir", "{bad}/nope"], ["--tasks-dir", "{bad}/nope", "does not exist"]),
    "data dir is a file": (["run", *RUN, "--data-dir", "{bad}/afile.txt"], ["--data-dir", "{bad}/afile.txt", "is a file"]),
    "cache dir is a file": (["run", *RUN, "--cache-dir", "{bad}/afile.txt"], ["--cache-dir", "{bad}/afile.txt", "is a file"]),
    "results dir is a file": (["run", *RUN, "--results-dir", "{bad}/afile.txt"], ["--results-dir", "{bad}/afile.txt", "is a file"]),
    "misspelt option": (["run", *RUN, "--thread", "2"], ["No such option: --thread"]),
    "option without value": (["run", *RUN, "--variant"], ["--variant", "requires an argument"]),
    "extra argument": (["run", *RUN, "extra"], ["unexpected extra argument", "extra"]),
    "unknown command": (["frobnicate"], ["No such command", "frobnicate"]),
    "convert unknown variant": (["convert", "-m", "{model}", "-v", "qint9"], ["unknown dtype 'qint9'"]),
    "convert model empty": (["convert", "-m", "", "-v", "qint8"], ["--model is empty"]),
    # gate and report read the finished run in {results}
    "max drop 5 absolute": (["gate", "-v", "qint8", "--max-drop", "5", "--results-dir", "{results}"],
                            ["max_drop must be a number >= 0 and < 1", "NDCG@10 lies in [0, 1]", "can never fail"]),
    "max drop negative": (["gate", "-v", "qint8", "--max-drop", "-0.1", "--results-dir", "{results}"],
                          ["max_drop must be a number >= 0 and < 1, not -0.1"]),
    "max drop nan": (["gate", "-v", "qint8", "--max-drop", "nan", "--results-dir", "{results}"], ["max_drop must be a number >= 0 and < 1, not nan"]),
    "max drop 1 relative": (["gate", "-v", "qint8", "--max-drop", "1", "--relative", "--results-dir", "{results}"],
                            ["a relative max_drop is a fraction of Float32's NDCG@10", "must be < 1, not 1.0"]),
    "gate rule": (["gate", "-v", "qint8", "--rule", "pointy", "--results-dir", "{results}"], ["rule must be 'point' or 'ci', not 'pointy'"]),
    "gate tasks empty": (["gate", "-v", "qint8", "--tasks", "", "--results-dir", "{results}"], ["--tasks is empty"]),
    "gate model empty": (["gate", "-v", "qint8", "--model", "", "--results-dir", "{results}"], ["--model is empty"]),
    "gate unknown variant": (["gate", "-v", "qint9", "--results-dir", "{results}"], ["unknown dtype 'qint9'"]),
    "gate variant without results": (["gate", "-v", "quint8", "--results-dir", "{results}"], ["no results for variant 'quint8'"]),
    "gate without results": (["gate", "-v", "qint8", "--results-dir", "{bad}/empty-results"], ["{bad}/empty-results"]),
    "gate config missing": (["gate", "-v", "qint8", "--config", "{bad}/missing.yaml", "--results-dir", "{results}"],
                            ["gate config not found: {bad}/missing.yaml"]),
    "gate unknown task": (["gate", "-v", "qint8", "--tasks", "nope", "--results-dir", "{results}"], ["no Float32 result on task 'nope'"]),
    "report unknown task": (["report", "--results-dir", "{results}", "--tasks", "scifact,nope"], ["no Float32 result on task 'nope'"]),
    "report unknown model": (["report", "--results-dir", "{results}", "--model", "nosuch"], ["no results for model 'nosuch'"]),
    "report output suffix": (["report", "--results-dir", "{results}", "--output", "{bad}/out/table.xlsx"],
                             ["--output {bad}/out/table.xlsx: unknown suffix '.xlsx'", "or give --format"]),
    "report format": (["report", "--results-dir", "{results}", "--format", "xlsx"], ["--format must be one of md, csv, json, html, not 'xlsx'"]),
    "report bench missing": (["report", "--results-dir", "{results}", "--bench", "{bad}/missing-bench.json"],
                             ["bench results not found: {bad}/missing-bench.json"]),
    "report bench broken": (["report", "--results-dir", "{results}", "--bench", "{bad}/broken-bench.json"],
                            ["{bad}/broken-bench.json: unreadable bench results"]),
    "report bench foreign": (["report", "--results-dir", "{results}", "--bench", "{bad}/foreign-bench.json"],
                             ["{bad}/foreign-bench.json: not an evalsuite.bench"]),
    "report tasks empty": (["report", "--results-dir", "{results}", "--tasks", ","], ["--tasks is empty"]),
    "report unknown variant": (["report", "--results-dir", "{results}", "-v", "qint9"], ["unknown dtype 'qint9'"]),
    "report output under a file": (["report", "--results-dir", "{results}", "--output", "{bad}/afile.txt/table.md"], ["{bad}/afile.txt"]),
    "report plots is a file": (["report", "--results-dir", "{results}", "--plots", "{bad}/afile.txt"], ["--plots", "{bad}/afile.txt", "is a file"]),
    "bench lengths not numbers": (["bench", "-m", "{model}", "-v", "qint8", "--lengths", "a,b"], ["--lengths: 'a,b' is not a comma-separated list of positive integers"]),
    "bench length 1": (["bench", "-m", "{model}", "-v", "qint8", "--lengths", "1"], ["length 1 is too short"]),
    "bench length above the model": (["bench", "-m", "{model}", "-v", "qint8", "--levels", "none", "--lengths", "100", "--no-memory"],
                                     ["length 100 is above", "max_seq_length 64"]),
    "bench batch 0": (["bench", "-m", "{model}", "-v", "qint8", "--batch", "0"], ["--batch", "positive"]),
    "bench repeats 0": (["bench", "-m", "{model}", "-v", "qint8", "--repeats", "0"], ["--repeats must be a whole number >= 1, not 0"]),
    "bench warmup -1": (["bench", "-m", "{model}", "-v", "qint8", "--warmup", "-1"], ["--warmup must be a whole number >= 0, not -1"]),
    "bench threads 0": (["bench", "-m", "{model}", "-v", "qint8", "--threads", "0"], ["--threads must be a whole number >= 1, not 0"]),
    "bench format": (["bench", "-m", "{model}", "-v", "qint8", "--format", "xml"], ["--format must be one of table, md, not 'xml'"]),
    "bench output suffix": (["bench", "-m", "{model}", "-v", "qint8", "--output", "{bad}/speed.xlsx"], ["--output {bad}/speed.xlsx: unknown suffix '.xlsx'"]),
    "bench levels": (["bench", "-m", "{model}", "-v", "qint8", "--levels", "qint9"], ["unknown dtype 'qint9'"]),
    "bench variant empty": (["bench", "-m", "{model}", "-v", ""], ["--variant is empty"]),
}

# gate YAML files: name -> (content, texts of the error line besides the file name)
GATE_FILES: dict[str, tuple[bytes, list[str]]] = {
    "syntax": (b"max_drop: 0.01\nrule: [point\n", [":3: invalid YAML in gate config"]),
    "list": (b"- max_drop: 0.01\n", ["gate config must be a mapping of keys"]),
    "unknown key": (b"max_dorp: 0.01\n", ["unknown key 'max_dorp'", "did you mean 'max_drop'"]),
    "max drop text": (b"max_drop: lots\n", ["max_drop must be a number, not 'lots'"]),
    "max drop 5": (b"max_drop: 5\n", ["max_drop must be a number >= 0 and < 1", "can never fail"]),
    "confidence": (b"confidence: 2\n", ["confidence must be in [0.5, 1), not 2"]),
    "resamples": (b"n_resamples: 100\n", ["n_resamples must be at least 10000, not 100"]),
    "rule": (b"rule: strict\n", ["rule must be 'point' or 'ci', not 'strict'"]),
    "relative": (b"relative: 'yes'\n", ["relative must be true or false"]),
    "tasks": (b"tasks: ['']\n", ["tasks must be a non-empty list of task names"]),
    "not utf-8": (b"rule: \xff\xfe\n", ["gate config is not UTF-8 text"]),
    "speed length": (b"speed_length: 0\n", ["speed_length and speed_batch must be at least 1"]),
}

# task YAML files (in --tasks-dir): name -> (content, texts of the error line besides the file name)
TASK_FILES: dict[str, tuple[bytes, list[str]]] = {
    "name a number": (b"name: 123\nbeir_folder: scifact\n", ["'name' must be non-empty text", "not 123"]),
    "list at top": (b"- name: Mine\n", ["task file must be a mapping of keys"]),
    "syntax": (b"name: Mine\nsplit: 'test\n", [":3: invalid YAML in task file (while scanning a quoted scalar)"]),
    "unknown key": (b"name: Mine\nsplitt: test\n", ["unknown key 'splitt'", "did you mean 'split'"]),
    "no name": (b"split: test\n", ["task file needs 'name'"]),
    "empty file": (b"", ["task file needs 'name'"]),
    "default not boolean": (b"name: Mine\ndefault: 'yes'\n", ["'default' must be true or false, not 'yes'"]),
    "split a number": (b"name: Mine\nsplit: 5\n", ["'split' must be non-empty text", "not 5"]),
    "empty name": (b"name: ''\n", ["'name' must be non-empty text"]),
    "folder a list": (b"name: Mine\nbeir_folder: [a]\n", ["'beir_folder' must be non-empty text"]),
    "not utf-8": (b"name: Caf\xe9\n", ["task file is not UTF-8 text"]),
}

# files of a copy of the tiny model: name -> (file, content, texts of the error line; {dir} is the model copy)
MODEL_FILES: dict[str, tuple[str, bytes, list[str]]] = {
    "config.json not JSON": ("config.json", b'{"model_type": "bert",\n', ["{dir}/config.json:2: invalid JSON"]),
    "config.json a list": ("config.json", b"[]", ["{dir}/config.json: must hold an object at the top level, not list"]),
    "positions not a number": ("config.json", b'{"model_type": "bert", "max_position_embeddings": "many"}',
                               ["{dir}/config.json: max_position_embeddings must be a whole number >= 1, not 'many'"]),
    "max_seq_length 0": ("sentence_bert_config.json", b'{"max_seq_length": 0}',
                         ["{dir}/sentence_bert_config.json: max_seq_length must be a whole number >= 1 and <= 128", "not 0"]),
    "max_seq_length text": ("sentence_bert_config.json", b'{"max_seq_length": "long"}',
                            ["{dir}/sentence_bert_config.json: max_seq_length must be a whole number >= 1", "not 'long'"]),
    "max_seq_length above positions": ("sentence_bert_config.json", b'{"max_seq_length": 1000}',
                                       ["{dir}/sentence_bert_config.json: max_seq_length is 1000, more than the model has positions for",
                                        "<= 128 (the position embeddings in {dir}/config.json)"]),
    "max_seq_length negative": ("sentence_bert_config.json", b'{"max_seq_length": -5}', ["max_seq_length must be a whole number >= 1", "not -5"]),
    "max_seq_length fraction": ("sentence_bert_config.json", b'{"max_seq_length": 64.5}', ["max_seq_length must be a whole number", "not 64.5"]),
    "max_seq_length boolean": ("sentence_bert_config.json", b'{"max_seq_length": true}', ["max_seq_length must be a whole number", "not True"]),
    "sentence_bert_config not JSON": ("sentence_bert_config.json", b"max_seq_length=64", ["{dir}/sentence_bert_config.json:1: invalid JSON"]),
    "modules.json an object": ("modules.json", b'{"0": {"type": "Pooling"}}', ["{dir}/modules.json: must hold a list at the top level, not dict"]),
    "modules.json of strings": ("modules.json", b'["Pooling"]', ["{dir}/modules.json: entry 0 must be an object"]),
    "modules.json type a number": ("modules.json", b'[{"type": 5}]', ["{dir}/modules.json: entry 0 must be an object with string 'type'"]),
    "modules.json not JSON": ("modules.json", b"[{", ["{dir}/modules.json:1: invalid JSON"]),
    "pooling without mode": ("1_Pooling/config.json", b'{"word_embedding_dimension": 32}', ["{dir}/1_Pooling/config.json: names no supported pooling mode"]),
    "pooling not JSON": ("1_Pooling/config.json", b"{mean}", ["{dir}/1_Pooling/config.json:1: invalid JSON"]),
    "pooling a list": ("1_Pooling/config.json", b'["mean"]', ["{dir}/1_Pooling/config.json: must hold an object"]),
    "tokenizer.json truncated": ("tokenizer.json", None, ["{dir}/tokenizer.json:", "invalid JSON"]),  # type: ignore[dict-item]
    "tokenizer.json not UTF-8": ("tokenizer.json", b'{"model": "\xff"}', ["{dir}/tokenizer.json: not UTF-8 text"]),
    "tokenizer_config not JSON": ("tokenizer_config.json", b"{,}", ["{dir}/tokenizer_config.json:1: invalid JSON"]),
    "special tokens not JSON": ("special_tokens_map.json", b'{"pad_token": }', ["{dir}/special_tokens_map.json:1: invalid JSON"]),
    "prompts a list": ("config_sentence_transformers.json", b'{"prompts": ["query: "]}',
                       ["{dir}/config_sentence_transformers.json: 'prompts' must map names to strings"]),
    "prompts not JSON": ("config_sentence_transformers.json", b'{"prompts": {"query": "q: ",}}', ["{dir}/config_sentence_transformers.json:1: invalid JSON"]),
    "weights damaged": ("model.safetensors", b"\x00" * 64, ["cannot load the model in {dir}"]),
}

# configs/models/*.yaml (read in-process: the command always uses the packaged folder): content after the model's ids
MODEL_CONFIGS: dict[str, tuple[str, list[str]]] = {
    "pooling": ("pooling: avg\n", ["pooling must be one of mean, cls, max, lasttoken, not 'avg'"]),
    "normalize": ("normalize: 'yes'\n", ["normalize must be true or false, not 'yes'"]),
    "prefix a number": ("query_prefix: 5\n", ["query_prefix must be a string, not 5"]),
    "max_seq_length 0": ("max_seq_length: 0\n", ["max_seq_length must be a whole number >= 1 and <= 128", "not 0"]),
    "max_seq_length above positions": ("max_seq_length: 1000\n", ["max_seq_length is 1000, more than the model has positions for"]),
    "unknown key": ("query_prefx: 'q: '\n", ["unknown key 'query_prefx' in model config", "did you mean 'query_prefix'"]),
}

SURROGATE = '{"_id": "1001", "title": "t", "text": "bad \\ud800 text"}'

# BEIR folders (passed as --tasks FOLDER): name -> (file, content or None to delete, texts of the error line; {dir} the folder)
DATA_FILES: dict[str, tuple[str, bytes | None, list[str]]] = {
    "two corpus files": ("corpus.jsonl.gz", b"", ["{dir}: holds both corpus.jsonl and corpus.jsonl.gz", "ambiguous"]),
    "corpus line not JSON": ("corpus.jsonl", b'{"_id": "1", "text": "a"}\n{"_id": "2", "text": \n', ["{dir}/corpus.jsonl:2: invalid JSON"]),
    "corpus line an array": ("corpus.jsonl", b'{"_id": "1", "text": "a"}\n["2", "b"]\n', ["{dir}/corpus.jsonl:2: expected a JSON object"]),
    "corpus text missing": ("corpus.jsonl", b'{"_id": "1", "title": "a"}\n', ["{dir}/corpus.jsonl:1: missing or invalid 'text'"]),
    "corpus title a number": ("corpus.jsonl", b'{"_id": "1", "title": 5, "text": "a"}\n', ["{dir}/corpus.jsonl:1: 'title' must be a string"]),
    "duplicate document": ("corpus.jsonl", b'{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', ["{dir}/corpus.jsonl:2: duplicate document id '1'"]),
    "empty corpus": ("corpus.jsonl", b"\n\n", ["{dir}/corpus.jsonl: empty corpus"]),
    "corpus not UTF-8": ("corpus.jsonl", b'{"_id": "1", "text": "caf\xe9"}\n', ["{dir}/corpus.jsonl:1: not valid UTF-8 (byte 0xe9 at column 26)"]),
    "surrogate in document text": ("corpus.jsonl", (SURROGATE + "\n").encode(), ["{dir}/corpus.jsonl:1: 'text' holds a lone surrogate \\ud800"]),
    "surrogate in title": ("corpus.jsonl", b'{"_id": "1", "title": "\\udfff", "text": "a"}\n', ["{dir}/corpus.jsonl:1: 'title' holds a lone surrogate \\udfff"]),
    "surrogate in query": ("queries.jsonl", b'{"_id": "q0", "text": "x \\uDBFF y"}\n', ["{dir}/queries.jsonl:1: 'text' holds a lone surrogate \\udbff"]),
    "queries missing": ("queries.jsonl", None, ["{dir}: missing queries.jsonl"]),
    "duplicate query": ("queries.jsonl", b'{"_id": "q0", "text": "a"}\n{"_id": "q0", "text": "b"}\n', ["{dir}/queries.jsonl:2: duplicate query id 'q0'"]),
    "queries not UTF-8": ("queries.jsonl", b'{"_id": "q0", "text": "caf\xe9"}\n', ["{dir}/queries.jsonl:1: not valid UTF-8"]),
    "qrels columns": ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq0\t1000\n", ["{dir}/qrels/test.tsv:2: expected 3 tab-separated columns"]),
    "qrels score": ("qrels/test.tsv", b"q0\t1000\tx\n", ["{dir}/qrels/test.tsv:1: score 'x' is not a number"]),
    "qrels unknown query": ("qrels/test.tsv", b"q0\t1000\t1\nq77\t1001\t1\n", ["{dir}/qrels/test.tsv:2: query id 'q77' is not in queries.jsonl"]),
    "qrels unknown document": ("qrels/test.tsv", b"q0\t4242\t1\n", ["{dir}/qrels/test.tsv:1: document id '4242' is not in the corpus"]),
    "qrels empty": ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\n", ["{dir}/qrels/test.tsv: no relevance judgements"]),
    "qrels missing": ("qrels/test.tsv", None, ["{dir}: missing qrels/test.tsv"]),
    "gzip corpus not gzip": ("corpus.jsonl.gz", b"not gzip at all", ["{dir}/corpus.jsonl.gz: not a gzip file"]),
    "gzip corpus truncated": ("corpus.jsonl.gz", None, ["{dir}/corpus.jsonl.gz:", "damaged or truncated gzip data"]),
}


def _write_bad_inputs(w: World) -> None:
    bad = w.bad
    (bad / "notamodel").mkdir()
    (bad / "notamodel" / "config.json").write_text("{}")
    (bad / "afile.txt").write_text("a file, not a folder\n")
    (bad / "empty-results").mkdir()
    (bad / "broken-bench.json").write_text('{"schema": "evalsuite.bench/1", ')
    (bad / "foreign-bench.json").write_text('{"schema": "someone.else/3"}')
    for name, (content, _) in GATE_FILES.items():
        (bad / f"gate-{_slug(name)}.yaml").write_bytes(content)
    for name, (content, _) in TASK_FILES.items():
        folder = bad / f"tasks-{_slug(name)}"
        folder.mkdir()
        (folder / "mine.yaml").write_bytes(content)
    for name, (file, content, _) in MODEL_FILES.items():
        folder = bad / f"model-{_slug(name)}"
        shutil.copytree(w.model, folder)
        target = folder / file
        if content is None:  # tokenizer.json cut in the middle
            content = target.read_bytes()[: target.stat().st_size // 2]
        target.write_bytes(content)
    template = make_beir(bad / "beir-template", n_docs=20, n_queries=4)
    for name, (file, content, _) in DATA_FILES.items():
        folder = bad / f"data-{_slug(name)}"
        shutil.copytree(template, folder)
        target = folder / file
        if name == "gzip corpus truncated":
            target.write_bytes(gzip.compress((folder / "corpus.jsonl").read_bytes())[:-30])
            (folder / "corpus.jsonl").unlink()
        elif name == "gzip corpus not gzip":
            target.write_bytes(content)  # type: ignore[arg-type]
            (folder / "corpus.jsonl").unlink()
        elif name == "two corpus files":  # a different corpus in the .gz: which one counts is ambiguous
            target.write_bytes(gzip.compress(b'{"_id": "1000", "text": "another corpus"}\n'))
        elif content is None:
            target.unlink()
        else:
            target.write_bytes(content)
    # a registered task (SciFact under --data-dir) whose folder is ambiguous: an error even as a default task
    shutil.copytree(bad / "data-two-corpus-files", bad / "ambiguous-data" / "scifact")


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace(".", "-")


def _fill(text: str, w: World, folder: Path | None = None) -> str:
    return (text.replace("{model}", str(w.model)).replace("{data}", str(w.data)).replace("{bad}", str(w.bad))
            .replace("{results}", str(w.results)).replace("{dir}", str(folder)))


def _expect(w: World, args: list[str], texts: list[str], tmp_path: Path, folder: Path | None = None, *,
            subprocess: bool = False) -> None:
    # The warm cache, and results of its own unless the case names some: a case that wrongly succeeded changes nothing.
    env = environment(EVALSUITE_CACHE_DIR=str(w.cache), EVALSUITE_RESULTS_DIR=str(tmp_path / "results"))
    proc = (run if subprocess else invoke)(*(_fill(a, w, folder) for a in args), cwd=tmp_path, env=env)
    line = one_problem(proc)
    assert line.startswith("error: ")
    for text in texts:
        assert _fill(text, w, folder) in line, line
    assert proc.stdout == ""


# --- the tests ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(OPTIONS))
def test_bad_option(case: str, world: World, tmp_path: Path) -> None:
    args, texts = OPTIONS[case]
    _expect(world, args, texts, tmp_path)


@pytest.mark.parametrize("case", list(GATE_FILES))
def test_bad_gate_config(case: str, world: World, tmp_path: Path) -> None:
    file = world.bad / f"gate-{_slug(case)}.yaml"
    _expect(world, ["gate", "-v", "qint8", "--config", str(file), "--results-dir", "{results}"],
            [f"{file}", *GATE_FILES[case][1]], tmp_path)


def test_bad_gate_config_in_report_too(world: World, tmp_path: Path) -> None:
    file = world.bad / "gate-max-drop-5.yaml"
    _expect(world, ["report", "--config", str(file), "--results-dir", "{results}"], [f"{file}: max_drop must be"], tmp_path)


@pytest.mark.parametrize("case", list(TASK_FILES))
def test_bad_task_file(case: str, world: World, tmp_path: Path) -> None:
    folder = world.bad / f"tasks-{_slug(case)}"
    _expect(world, ["run", *RUN, "--tasks-dir", str(folder)], [f"{folder / 'mine.yaml'}", *TASK_FILES[case][1]], tmp_path)


@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_bad_model_file(case: str, world: World, tmp_path: Path) -> None:
    folder = world.bad / f"model-{_slug(case)}"
    _expect(world, ["run", *RUN, "--model", str(folder)], MODEL_FILES[case][2], tmp_path, folder)


@pytest.mark.parametrize("case", list(MODEL_CONFIGS))
def test_bad_model_config(case: str, tiny_model: Path, tmp_path: Path) -> None:
    content, texts = MODEL_CONFIGS[case]
    file = tmp_path / "mine.yaml"
    file.write_text(f"ids: [{json.dumps(str(tiny_model))}]\n{content}")
    with pytest.raises(EvalsuiteError) as info:
        read_settings(tiny_model, str(tiny_model), tmp_path)
    assert str(info.value).startswith(f"{file}"), info.value
    assert all(text in str(info.value) for text in texts), info.value


def test_model_config_ids_must_be_a_list(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("ids: some/model\n")
    with pytest.raises(EvalsuiteError, match=r"mine\.yaml: 'ids' must be a list of model ids"):
        read_settings(tiny_model, str(tiny_model), tmp_path)


@pytest.mark.parametrize("case", list(DATA_FILES))
def test_bad_data_file(case: str, world: World, tmp_path: Path) -> None:
    folder = world.bad / f"data-{_slug(case)}"
    _expect(world, ["run", "-m", "{model}", "-v", "qint8", "-t", str(folder)], DATA_FILES[case][2], tmp_path, folder)


def test_ambiguous_default_task_is_an_error_not_a_skip(world: World, tmp_path: Path) -> None:
    folder = world.bad / "ambiguous-data" / "scifact"
    _expect(world, ["run", "-m", "{model}", "-v", "qint8", "--data-dir", str(folder.parent)],
            ["{dir}: holds both corpus.jsonl and corpus.jsonl.gz"], tmp_path, folder)


# One case of each class (a usage error Click reports, a range check, a gate config, a task file, a model file, a
# data file) in a real process: the same line and exit code through the interpreter, with nothing printed by a
# library at start-up or exit that the in-process call could not see.
CANARIES = {
    "option": lambda w: (OPTIONS["misspelt option"][0], OPTIONS["misspelt option"][1], None),
    "range": lambda w: (OPTIONS["threads 0"][0], OPTIONS["threads 0"][1], None),
    "gate config": lambda w: (["gate", "-v", "qint8", "--config", str(w.bad / "gate-syntax.yaml"), "--results-dir", "{results}"],
                              [str(w.bad / "gate-syntax.yaml"), *GATE_FILES["syntax"][1]], None),
    "task file": lambda w: (["run", *RUN, "--tasks-dir", str(w.bad / "tasks-syntax")],
                            [str(w.bad / "tasks-syntax" / "mine.yaml"), *TASK_FILES["syntax"][1]], None),
    "model file": lambda w: (["run", *RUN, "--model", str(w.bad / "model-max_seq_length-above-positions")],
                             MODEL_FILES["max_seq_length above positions"][2], w.bad / "model-max_seq_length-above-positions"),
    "data file": lambda w: (["run", "-m", "{model}", "-v", "qint8", "-t", str(w.bad / "data-surrogate-in-document-text")],
                            DATA_FILES["surrogate in document text"][2], w.bad / "data-surrogate-in-document-text"),
}


@pytest.mark.parametrize("case", list(CANARIES))
def test_canary_in_a_real_process(case: str, world: World, tmp_path: Path) -> None:
    args, texts, folder = CANARIES[case](world)
    _expect(world, args, texts, tmp_path, folder, subprocess=True)


def test_threads_from_the_environment_are_checked_like_the_option(world: World, tmp_path: Path) -> None:
    """EVALSUITE_THREADS (the default of --threads) is checked as --threads is, and named in the error."""
    env = environment(EVALSUITE_CACHE_DIR=str(world.cache), EVALSUITE_RESULTS_DIR=str(tmp_path / "results"),
                      EVALSUITE_THREADS="0")
    proc = invoke(*(_fill(a, world) for a in ["run", *RUN]), cwd=tmp_path, env=env)
    assert one_problem(proc) == "error: EVALSUITE_THREADS must be a whole number >= 1, not '0'"
    assert proc.stdout == ""


def test_the_one_line_check_ignores_other_lines_but_not_a_second_error() -> None:
    """clirun.one_problem, the contract every case above is held to: lines other libraries print before the error
    (a new warning of a dependency) or the interpreter prints at exit do not count; a second error line, a line after
    the error (a wrapped or multi-line message), a traceback, another exit code or an unanticipated exception do."""
    import subprocess

    def proc(stderr: str, code: int = 2, stdout: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(["evalsuite"], code, stdout, stderr)

    error = "error: --threads must be a whole number >= 1, not 0"
    library = "loading SciFact\nSomeLibraryWarning: a brand-new message from a dependency\n  and its second line\n"
    at_exit = "/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: leaked semaphore\n  warnings.warn(\n"
    assert one_problem(proc(f"{library}{error}\n")) == error
    assert one_problem(proc(f"{error}\n{at_exit}")) == error
    for bad in (proc(f"{error}\n{error}\n"), proc(f"{error}\nwrapped rest of the message\n"), proc(f"{error}\n", code=1),
                proc(f"Traceback (most recent call last):\n{error}\n"), proc("loading SciFact\n"),
                proc("error: RuntimeError: boom (set EVALSUITE_DEBUG=1 for a traceback)\n")):
        with pytest.raises(AssertionError):
            one_problem(bad)


def test_a_failed_case_changed_nothing_of_the_finished_run(world: World) -> None:
    """The gate and report cases read the finished run; none of them may have written into it."""
    files = sorted(p.relative_to(world.results) for p in world.results.rglob("*.json"))
    k = GateConfig().compositions  # qint8 depends on its batch: one file per batch composition
    assert sorted(p.name for p in files) == sorted(["float32.json", "qint8.json", *(f"qint8.c{c}.json" for c in range(1, k))])
    assert json.loads((world.results / files[0]).read_text())["variant"] == "float32"


# Stale reuse (changed tokenizer or config), overwrites (two folders named alike), tampering (no or a wrong
# checksum), an unusable tokenizer and a shard of the wrong shape: tests/test_model_identity.py, with what each
# change recomputes counted there.
