#!/usr/bin/env python3
"""Generate the sample documents in samples/ (committed; rerun only to change them).

    python3 -m venv /tmp/v && /tmp/v/bin/pip install Pillow==11.3.0
    /tmp/v/bin/python scripts/make_samples.py

Needs the DejaVu fonts (Debian: fonts-dejavu-core). Output is deterministic for a given Pillow.
"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "samples"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / name
    if not path.exists():
        raise SystemExit(f"missing font {path}: apt-get install fonts-dejavu-core")
    return ImageFont.truetype(str(path), size)


def page(lines, size=(850, 1100), title=None, font_name="DejaVuSans.ttf", pt=26):
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    y = 70
    if title:
        draw.text((70, y), title, fill="black", font=font("DejaVuSans-Bold.ttf", 38))
        y += 80
    body = font(font_name, pt)
    for line in lines:
        draw.text((70, y), line, fill=(20, 20, 20), font=body)
        y += int(pt * 1.6)
    return img


def main() -> None:
    OUT.mkdir(exist_ok=True)
    invoice = page(
        [
            "Invoice number: 2026-0117",
            "Date: 24 November 2026",
            "Bill to: Example Printing Ltd.",
            "",
            "2 x Archive boxes          19.90 EUR",
            "1 x Scanner service        85.00 EUR",
            "",
            "Total due:                104.90 EUR",
            "Payment within 30 days.",
        ],
        title="INVOICE",
    )
    invoice.save(OUT / "invoice.png", optimize=True)

    letter = page(
        [
            "Dear reader,",
            "",
            "docfleet turns a queue of documents into",
            "a stream of results, one per document,",
            "no matter how often a message is delivered.",
            "",
            "Kind regards,",
            "The docfleet team",
        ],
        title="A short letter",
        font_name="DejaVuSerif.ttf",
    )
    letter.convert("L").save(OUT / "letter.jpg", quality=85)

    receipt = page(["Coffee   3.20", "Bagel    2.80", "Total    6.00"], size=(420, 300), pt=24)
    receipt.save(OUT / "receipt.webp", lossless=True)

    report_pages = [
        page([f"Section {n}", "", f"This is page {n} of the quarterly report.", "Figures are in thousands."],
             title=f"Quarterly report, page {n}")
        for n in (1, 2)
    ]
    report_pages[0].save(OUT / "report.pdf", save_all=True, append_images=report_pages[1:], resolution=100.0)
    scan_pages = [p.convert("L").resize((425, 550)) for p in report_pages]
    scan_pages[0].save(OUT / "scan.tiff", save_all=True, append_images=scan_pages[1:], compression="tiff_deflate")


if __name__ == "__main__":
    main()
