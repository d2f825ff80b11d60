"""README "Offline and Hub": a Hub id goes through ``huggingface_hub.snapshot_download`` and a task without
``--data-dir`` through mteb's own Hub loader. Both are run for real here, against a stand-in of the Hugging Face Hub
on 127.0.0.1; nothing reaches the network.

``evalsuite run --model acme/tiny-bert --tasks scifact`` (no ``--data-dir``) downloads the model snapshot through
huggingface_hub and SciFact's corpus, queries and qrels through mteb's ``RetrievalDatasetLoader`` and ``datasets``
(at the revision mteb pins), from repositories the stand-in serves from local folders. The stand-in records every
request, so the test sees which files the real clients fetched; the result must equal a run of the same model folder
and the same data as a local BEIR folder, query by query.

The command runs in this process (a subprocess with ``HF_ENDPOINT`` and ``HF_HOME`` set costs seconds of imports),
so the seam is what those variables set when the two libraries are imported: their endpoint, offline flag and cache
folders (:func:`point_clients_at`). Every request, file download and cache write of the real clients follows them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from conftest import make_beir
from promise_world import run_cli

pytest_plugins = ["promise_world"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the commit every repository of the stand-in is at


class HubStandIn:
    """The few Hub endpoints huggingface_hub and datasets use to download a repository, served from local folders.

    * ``GET /api/{models,datasets}/<repo>[/revision/<rev>]``: repository info with its commit and file list;
    * ``GET /api/{models,datasets}/<repo>/tree/<rev>[/<path>]``: a folder listing (``recursive=true`` for all files);
    * ``HEAD|GET /[datasets/]<repo>/resolve/<rev>/<file>``: a file, with ``X-Repo-Commit`` and ``ETag``.
    Anything else is a 404, as the Hub answers for a file that does not exist.
    """

    def __init__(self, repos: dict[tuple[str, str], Path]) -> None:
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                url = urlsplit(self.path)
                hub.requests.append((self.command, unquote(url.path)))
                code, payload, headers = hub.route(unquote(url.path), parse_qs(url.query))
                self.send_response(code)
                for key, value in {"Content-Length": str(len(payload)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _entry(folder: Path, path: Path) -> dict[str, object]:
        rel = str(path.relative_to(folder))
        if path.is_dir():
            return {"type": "directory", "oid": COMMIT, "path": rel}
        data = path.read_bytes()
        return {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": rel}

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        missing = (404, json.dumps({"error": "Entry not found"}).encode(), {"Content-Type": "application/json",
                                                                              "X-Error-Code": "EntryNotFound"})
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            folder = self.repos.get((parts[1][:-1], "/".join(parts[2:4])))
            rest = parts[4:]
            if folder is None:
                return missing
            if not rest or rest[0] == "revision":
                files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
                info = {"id": "/".join(parts[2:4]), "sha": COMMIT, "private": False, "gated": False, "disabled": False,
                        "lastModified": "2024-01-01T00:00:00.000Z", "siblings": [{"rfilename": f} for f in files]}
                return 200, json.dumps(info).encode(), {"Content-Type": "application/json"}
            if rest[0] == "tree":
                base = folder.joinpath(*rest[2:])
                if not base.is_dir():
                    return missing
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                entries = [self._entry(folder, p) for p in sorted(base.rglob("*") if recursive else base.iterdir())]
                return 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}
            return missing
        kind = "dataset" if parts[0] == "datasets" else "model"
        parts = parts[1:] if kind == "dataset" else parts
        if len(parts) >= 5 and parts[2] == "resolve":
            folder = self.repos.get((kind, "/".join(parts[:2])))
            file = None if folder is None else folder.joinpath(*parts[4:])
            if file is None or not file.is_file():
                return missing
            data = file.read_bytes()
            return 200, data, {"Content-Type": "application/octet-stream", "X-Repo-Commit": COMMIT,
                               "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        return missing


def point_clients_at(stand_in: HubStandIn, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``HF_ENDPOINT=<stand-in> HF_HOME=<home> HF_HUB_OFFLINE=0`` would have set at import time, for
    huggingface_hub (models) and datasets (mteb's data): the endpoint and its URL templates, online, and caches under
    ``home`` (so nothing is written to the user's cache)."""
    import datasets.config
    import huggingface_hub.constants

    hub = {"ENDPOINT": stand_in.url, "HUGGINGFACE_CO_URL_TEMPLATE": stand_in.url + "/{repo_id}/resolve/{revision}/{filename}",
           "HF_HUB_OFFLINE": False, "HF_HUB_CACHE": str(home / "hub"), "HF_ASSETS_CACHE": str(home / "assets"),
           "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json")}
    data = {"HF_ENDPOINT": stand_in.url, "HUB_DATASETS_URL": stand_in.url + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False, "HF_DATASETS_OFFLINE": False, "HF_DATASETS_CACHE": home / "datasets",
            "DOWNLOADED_DATASETS_PATH": home / "datasets" / "downloads",
            "EXTRACTED_DATASETS_PATH": home / "datasets" / "downloads" / "extracted", "HF_MODULES_CACHE": home / "modules"}
    for module, values in ((huggingface_hub.constants, hub), (datasets.config, data)):
        for name, value in values.items():
            assert hasattr(module, name), f"{module.__name__}.{name} is gone: the seam of this test moved"
            monkeypatch.setattr(module, name, value)


def mteb_repository(folder: Path, beir: Path) -> Path:
    """A BEIR folder in the layout of mteb's Hub datasets: ``corpus``, ``queries`` and ``default`` (qrels) configs
    declared in README.md, one JSON-lines file each."""
    for sub in ("corpus", "queries", "qrels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(beir / "corpus.jsonl", folder / "corpus" / "corpus.jsonl")
    shutil.copyfile(beir / "queries.jsonl", folder / "queries" / "queries.jsonl")
    rows = [line.split("\t") for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:] if line.strip()]
    (folder / "qrels" / "test.jsonl").write_text("".join(json.dumps({"query-id": q, "corpus-id": d, "score": int(s)}) + "\n"
                                                         for q, d, s in rows))
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: corpus\n  data_files:\n  - split: corpus\n    path: corpus/corpus.jsonl\n"
        "- config_name: queries\n  data_files:\n  - split: queries\n    path: queries/queries.jsonl\n"
        "- config_name: default\n  default: true\n  data_files:\n  - split: test\n    path: qrels/test.jsonl\n"
        "---\nA stand-in of mteb/scifact for tests.\n")
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[tuple[HubStandIn, Path]]:
    root = tmp_path_factory.mktemp("hub")
    beir = make_beir(root / "beir" / "scifact", n_docs=40, n_queries=8, seed=31)
    stand_in = HubStandIn({("model", "acme/tiny-bert"): tiny_model,
                           ("dataset", "mteb/scifact"): mteb_repository(root / "mteb-scifact", beir)})
    yield stand_in, beir
    stand_in.close()


def test_a_hub_id_and_an_mteb_task_come_through_the_real_hub_clients(hub, tiny_model: Path, tiny_source, shared_cache: Path,  # noqa: ANN001
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import mteb

    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.variants import BASELINE

    stand_in, beir = hub
    # the reference: the same model folder and the same data as a local BEIR folder, in this process
    local = run_sweep(SweepConfig(variants=[BASELINE], model=str(tiny_model), tasks=["scifact"], data_dir=beir.parent,
                                  cache_dir=shared_cache, results_dir=tmp_path / "local")).results["SciFact"]["float32"]
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache / "onnx" / tiny_source.weights_sha256[:16], cache / "onnx" / tiny_source.weights_sha256[:16])
    point_clients_at(stand_in, tmp_path / "hf-home", monkeypatch)
    monkeypatch.delenv("EVALSUITE_DATA_DIR", raising=False)
    code, out, err = run_cli(monkeypatch, capsys, "run", "--model", "acme/tiny-bert", "--tasks", "scifact", "--variant", "float32",
                             "--cache-dir", cache, "--results-dir", tmp_path / "results", "--json")
    assert code == 0, err[-3000:]
    [row] = json.loads(out)["results"]
    assert (row["task"], row["variant"], row["reused"]) == ("SciFact", "float32", False)
    [path] = (tmp_path / "results").rglob("float32.json")
    result = json.loads(path.read_text())
    revision = mteb.get_task("SciFact").metadata.dataset["revision"]
    assert result["model_id"] == "acme/tiny-bert" and result["weights_sha256"] == tiny_source.weights_sha256
    assert result["task"]["source"] == "mteb:mteb/scifact" and result["task"]["fingerprint"] == revision
    assert (result["task"]["n_documents"], result["task"]["n_queries"]) == (40, 8)
    assert result["per_query_ndcg_at_10"] == local.per_query_ndcg_at_10  # the same data and model, query by query
    # what the real clients fetched from the stand-in: the model snapshot, then mteb's data at the revision it pins
    got = {p for m, p in stand_in.requests if m == "GET"}
    assert "/api/models/acme/tiny-bert/revision/main" in got
    assert {f"/acme/tiny-bert/resolve/{COMMIT}/{f}" for f in ("model.safetensors", "config.json", "tokenizer.json")} <= got
    assert f"/datasets/mteb/scifact/resolve/{revision}/README.md" in got
    assert {f"/datasets/mteb/scifact/resolve/{COMMIT}/{f}" for f in
            ("corpus/corpus.jsonl", "queries/queries.jsonl", "qrels/test.jsonl")} <= got
    assert (tmp_path / "hf-home" / "hub" / "models--acme--tiny-bert").is_dir()  # the snapshot went where HF_HOME says
