#!/usr/bin/env python3
"""Reading-order benchmark on tests/fixtures/ocr/layout: CER of each page's text against the
hand-written order in expected.json, per fixture and per layout class, for

  * rapidocr 3.10.0 (PP-OCRv6, its defaults; lines in its output order),
  * Tesseract 5 (`tesseract PAGE - --psm 3`, its automatic page segmentation; Debian package
    tesseract-ocr, English data),
  * docfleet's own results, when `--docfleet DIR` names a `docfleet run --out DIR` of the same
    directory (e.g. `docfleet run --pipeline ocr tests/fixtures/ocr/layout --out DIR`; more than
    one `--docfleet LABEL=DIR` compare several runs, such as layout on and off).

The CER is tests/ocr.rs's: whitespace runs become one space, then Levenshtein distance over code
points divided by the reference length; per class, distances and lengths are summed.

Setup (Python 3.11, the venv of scripts/ocr/requirements-v6.txt, which requirements-bench.txt pins
the same way):

    python3.11 -m venv ~/.cache/docfleet/ocr-v6-venv
    ~/.cache/docfleet/ocr-v6-venv/bin/pip install -r scripts/ocr/requirements-bench.txt
    apt-get install -y tesseract-ocr     # 5.3.0 on Debian 12, with tesseract-ocr-eng
    ~/.cache/docfleet/ocr-v6-venv/bin/python scripts/ocr/bench_layout.py --docfleet on=DIR1 --docfleet off=DIR2

Prints a per-fixture and a per-class table (Markdown) and, with `--json FILE`, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "ocr" / "layout"


def norm(s: str) -> str:
    return " ".join(s.split())


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        cur = [i + 1]
        for j, cb in enumerate(b):
            cur.append(min(prev[j] + (ca != cb), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1]


def distance(hyp: str, ref_lines: list[str]) -> tuple[int, int]:
    ref = norm("\n".join(ref_lines))
    return levenshtein(norm(hyp), ref), len(ref)


def run_rapidocr(pages: list[dict]) -> dict[str, tuple[str, float]]:
    from rapidocr import RapidOCR

    engine = RapidOCR()
    out = {}
    for p in pages:
        started = time.perf_counter()
        r = engine(str(FIXTURES / p["file"]))
        took = time.perf_counter() - started
        out[p["file"]] = ("\n".join(r.txts or ()), took)
    return out


def run_tesseract(pages: list[dict]) -> dict[str, tuple[str, float]]:
    out = {}
    for p in pages:
        started = time.perf_counter()
        text = subprocess.run(
            ["tesseract", str(FIXTURES / p["file"]), "-", "--psm", "3", "-l", "eng"],
            check=True, capture_output=True, text=True,
        ).stdout
        out[p["file"]] = (text, time.perf_counter() - started)
    return out


def read_docfleet(directory: Path, pages: list[dict]) -> dict[str, tuple[str, float]]:
    out = {}
    for p in pages:
        found = list(directory.rglob(f"{p['file']}.ocr.json"))
        if not found:
            raise SystemExit(f"{directory}: no result for {p['file']}")
        result = json.loads(found[0].read_text())["output"]
        out[p["file"]] = (result["text"], result["timings_ms"]["total"] / 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docfleet", action="append", default=[], metavar="[LABEL=]DIR")
    ap.add_argument("--skip", action="append", default=[], choices=["rapidocr", "tesseract"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pages = json.loads((FIXTURES / "expected.json").read_text())["pages"]

    systems: dict[str, dict[str, tuple[str, float]]] = {}
    for spec in args.docfleet:
        label, _, d = spec.rpartition("=")
        systems[f"docfleet {label}".strip()] = read_docfleet(Path(d), pages)
    if "rapidocr" not in args.skip:
        systems["rapidocr 3.10"] = run_rapidocr(pages)
    if "tesseract" not in args.skip:
        version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split()[1]
        systems[f"tesseract {version}"] = run_tesseract(pages)

    names = list(systems)
    report = {"fixtures": {}, "classes": {}}
    print("| fixture | class | chars | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    per_class: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for p in pages:
        row = []
        for n in names:
            d, chars = distance(systems[n][p["file"]][0], p["lines"])
            per_class[p["class"]][n][0] += d
            per_class[p["class"]][n][1] += chars
            per_class["all"][n][0] += d
            per_class["all"][n][1] += chars
            row.append(d / chars)
            report["fixtures"].setdefault(p["file"], {})[n] = {"distance": d, "chars": chars,
                                                            "seconds": round(systems[n][p["file"]][1], 3)}
        chars = len(norm("\n".join(p["lines"])))
        print(f"| {p['file']} | {p['class']} | {chars} | " + " | ".join(f"{c:.2%}" for c in row) + " |")
    print()
    print("| class | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for cls, by in per_class.items():
        print(f"| {cls} | " + " | ".join(f"{by[n][0] / by[n][1]:.2%}" for n in names) + " |")
        report["classes"][cls] = {n: by[n][0] / by[n][1] for n in names}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
