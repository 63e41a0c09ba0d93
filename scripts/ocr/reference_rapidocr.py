#!/usr/bin/env python3
"""Run rapidocr-onnxruntime 1.4.4 (default config) on every good page listed in
tests/fixtures/ocr/ground_truth.json and write tests/fixtures/ocr/rapidocr_reference.json.

    ~/.cache/docfleet/ocr-venv/bin/python scripts/ocr/reference_rapidocr.py [--repeat 3]

(venv set up as described in scripts/ocr/generate_fixtures.py / requirements.txt.)

Page loading (identical to what RapidOCR's own LoadImage does for these files):
  * raster files: Pillow opens the file, seeks to the page (multi-page TIFF),
    converts to RGB (grayscale is replicated to 3 channels), and the array is
    passed to RapidOCR in BGR channel order. For single-frame files the script
    asserts that this equals RapidOCR's own LoadImage(path) output.
  * PDF pages: rendered by pdfium (pypdfium2, Apache-2.0/BSD-3) at 150 dpi,
    `page.render(scale=150/72)` -> bitmap of ceil(pt*150/72) pixels (1241x1754 for
    A4), pypdfium2's default render options (white background), then RGB->BGR.

Metrics (all computed on Unicode code points):
  hyp      = the recognised line texts in RapidOCR's output order, joined with "\\n"
  ref      = the ground-truth lines (human reading order) joined with "\\n"
  norm(s)  = every maximal run of whitespace (str.isspace(), "\\n" included)
             replaced by one U+0020 space, then leading/trailing spaces removed
  cer               = lev(norm(hyp), norm(ref)) / len(norm(ref))
  cer_nospace       = lev(strip_ws(hyp), strip_ws(ref)) / len(strip_ws(ref)),
                      strip_ws = remove all whitespace (ignores missing/extra spaces)
  cer_sorted_lines  = cer computed after sorting both hyp lines and ref lines
                      lexicographically (by code point): a rough order-free score
                      that isolates recognition errors from reading-order errors
  lev = Levenshtein distance with unit cost for insertion, deletion and substitution.
  CER can exceed 1.0. Per page type, CER is micro-averaged: sum of distances /
  sum of reference lengths over all pages of that type.

Each page is also run once with use_cls=False (the 0/180 degree line classifier
skipped); its text and metrics are stored under "no_cls" and summarised as cer_no_cls.

Timing: wall_s is the median over --repeat runs of time.perf_counter() around the
single `engine(img)` call (excludes file decoding and PDF rasterisation), after
one untimed warm-up call on the first page; wall_s_runs keeps every run (the first
run on a page is slower, onnxruntime being new to the input shapes). Threads are
RapidOCR's defaults (intra/inter_op_num_threads -1 -> onnxruntime's own default).
Results of all repeats must be identical (asserted).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image
from rapidocr_onnxruntime import RapidOCR

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "ocr"
PDF_DPI = 150


def norm_ws(s: str) -> str:
    return " ".join(s.split())


def strip_ws(s: str) -> str:
    return "".join(s.split())


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def metrics(hyp_lines: list[str], ref_lines: list[str]) -> dict:
    hyp, ref = "\n".join(hyp_lines), "\n".join(ref_lines)
    out = {}
    for key, h, r in (
        ("cer", norm_ws(hyp), norm_ws(ref)),
        ("cer_nospace", strip_ws(hyp), strip_ws(ref)),
        ("cer_sorted_lines", norm_ws("\n".join(sorted(hyp_lines))), norm_ws("\n".join(sorted(ref_lines)))),
    ):
        d = levenshtein(h, r)
        out[key] = {"distance": d, "ref_chars": len(r), "value": round(d / len(r), 6)}
    return out


def load_pages(entry: dict):
    """Yield (page_index, BGR uint8 array) for every page of a ground-truth entry."""
    path = FIX / entry["file"]
    if entry["format"] == "pdf":
        doc = pdfium.PdfDocument(str(path))
        try:
            for i in range(len(doc)):
                pil = doc[i].render(scale=PDF_DPI / 72).to_pil().convert("RGB")
                yield i, np.ascontiguousarray(np.asarray(pil)[:, :, ::-1])
        finally:
            doc.close()
        return
    with Image.open(path) as im:
        n = getattr(im, "n_frames", 1)
        for i in range(n):
            im.seek(i)
            yield i, np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def run_once(engine, img, use_cls=True):
    t0 = time.perf_counter()
    result, elapse = engine(img, use_cls=use_cls)
    wall = time.perf_counter() - t0
    lines = []
    for box, text, score in result or []:
        lines.append({"text": text, "score": round(float(score), 6),
                      "box": [[round(float(x), 2), round(float(y), 2)] for x, y in box]})
    el = None
    if elapse is not None:
        el = {k: round(float(v), 6) for k, v in zip(("det_s", "cls_s", "rec_s"), elapse)}
    return lines, wall, el


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per page (median is reported)")
    ap.add_argument("--out", type=Path, default=FIX / "rapidocr_reference.json")
    args = ap.parse_args()

    gt = json.loads((FIX / "ground_truth.json").read_text())
    engine = RapidOCR()  # default config.yaml of the package

    pages = []
    for entry in gt["files"]:
        for i, img in load_pages(entry):
            if entry["format"] != "pdf" and len(entry["pages"]) == 1:
                own = engine.load_img(str(FIX / entry["file"]))
                assert own.shape == img.shape and np.array_equal(own, img), entry["file"]
            pages.append((entry, i, img))

    load_before = os.getloadavg()
    engine(pages[0][2])  # warm-up (first inference allocates / optimises)

    records = []
    for entry, i, img in pages:
        gt_page = entry["pages"][i]
        runs = [run_once(engine, img) for _ in range(max(1, args.repeat))]
        lines, _, el = runs[0]
        for other, _, _ in runs[1:]:
            if other != lines:
                raise SystemExit(f"non-deterministic output on {entry['file']} page {i}")
        texts = [ln["text"] for ln in lines]
        nc_lines, _, _ = run_once(engine, img, use_cls=False)
        nc_texts = [ln["text"] for ln in nc_lines]
        rec = {
            "file": entry["file"],
            "page": i,
            "type": entry["type"],
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "wall_s": round(statistics.median(r[1] for r in runs), 4),
            "wall_s_runs": [round(r[1], 4) for r in runs],
            "rapidocr_elapse": el,
            "metrics": metrics(texts, gt_page["lines"]),
            "text": "\n".join(texts),
            "ground_truth": gt_page["text"],
            "lines": lines,
            "no_cls": {
                "metrics": metrics(nc_texts, gt_page["lines"]),
                "text": "\n".join(nc_texts),
                "same_as_default": nc_lines == lines,
            },
        }
        records.append(rec)
        print(f"{rec['metrics']['cer']['value']:8.4f}  {rec['wall_s']:7.3f}s  {entry['file']}#{i}", flush=True)

    summary = {}
    for r in records:
        s = summary.setdefault(r["type"], {"pages": 0, "wall_s": 0.0,
                                           **{k: [0, 0] for k in r["metrics"]}})
        s["pages"] += 1
        s["wall_s"] += r["wall_s"]
        for k, m in r["metrics"].items():
            s[k][0] += m["distance"]
            s[k][1] += m["ref_chars"]
        m = r["no_cls"]["metrics"]["cer"]
        s.setdefault("cer_no_cls", [0, 0])
        s["cer_no_cls"][0] += m["distance"]
        s["cer_no_cls"][1] += m["ref_chars"]
    table = {}
    for t, s in summary.items():
        table[t] = {"pages": s["pages"], "mean_wall_s": round(s["wall_s"] / s["pages"], 4)}
        for k in list(records[0]["metrics"]) + ["cer_no_cls"]:
            table[t][k] = round(s[k][0] / s[k][1], 6)

    out = {
        "generator": "scripts/ocr/reference_rapidocr.py",
        "engine": "rapidocr-onnxruntime default config (config.yaml shipped in the wheel)",
        "versions": {
            "python": sys.version.split()[0],
            **{p: version(p) for p in ("rapidocr-onnxruntime", "onnxruntime", "numpy",
                                       "opencv-python", "pillow", "pypdfium2", "pyclipper", "shapely")},
        },
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
                    "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
        "pdf_raster_dpi": PDF_DPI,
        "repeat": args.repeat,
        "definitions": {
            "hyp": "line texts in RapidOCR output order joined with '\\n'",
            "ref": "ground-truth lines (reading order) joined with '\\n'",
            "norm": "maximal whitespace runs (str.isspace, incl. newline) -> one U+0020; strip ends",
            "cer": "levenshtein(norm(hyp), norm(ref)) / len(norm(ref)), code points, unit costs",
            "cer_nospace": "as cer but all whitespace removed from both strings",
            "cer_sorted_lines": "as cer but hyp lines and ref lines each sorted lexicographically first",
            "no_cls": "the same page run once more with engine(img, use_cls=False) (angle classifier "
                      "skipped, everything else default); cer_no_cls in the summary is its cer",
            "summary": "per page type: sum(distance) / sum(ref_chars) (micro-average)",
            "wall_s": "median over `repeat` runs of perf_counter() around engine(img), after a warm-up; "
                      "wall_s_runs lists every run (the first run on a new input shape is slower: "
                      "onnxruntime plans/allocates per shape, RapidOCR disables the CPU memory arena)",
            "box": "4 corner points [[x,y] x4] clockwise from top-left, in page pixels (float)",
        },
        "summary_by_type": table,
        "pages": records,
    }
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")

    keys = list(records[0]["metrics"]) + ["cer_no_cls"]
    print()
    print(f"| page type | pages | {' | '.join(keys)} | mean wall s |")
    print("|" + "---|" * (len(keys) + 3))
    for t, row in table.items():
        print(f"| {t} | {row['pages']} | " + " | ".join(f"{row[k]:.4f}" for k in keys)
              + f" | {row['mean_wall_s']:.3f} |")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
