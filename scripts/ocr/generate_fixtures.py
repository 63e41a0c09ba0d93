#!/usr/bin/env python3
"""Generate the OCR test fixtures in tests/fixtures/ocr/ (committed; rerun only to change them).

Setup (venv outside the repo; exact pins in scripts/ocr/requirements.txt):

    python3.11 -m venv ~/.cache/docfleet/ocr-venv
    ~/.cache/docfleet/ocr-venv/bin/pip install -r scripts/ocr/requirements.txt
    ~/.cache/docfleet/ocr-venv/bin/python scripts/ocr/generate_fixtures.py

Needs these Debian packages (fonts are read from their fixed install paths,
nothing else is accepted, so the glyphs are the same on every machine):

    apt-get install -y fonts-dejavu-core fonts-liberation2

    fonts-dejavu-core  2.37-6   -> /usr/share/fonts/truetype/dejavu/DejaVu{Sans,Sans-Bold,Serif,SansMono}.ttf
    fonts-liberation2  2.1.5-1  -> /usr/share/fonts/truetype/liberation2/Liberation{Sans-Regular,Sans-Bold,Serif-Regular}.ttf

Everything is deterministic: no clocks, no unseeded randomness (the one random
source is random.Random(SEED)), reportlab runs in `invariant` mode (fixed
document id, no dates, fixed "random" bytes for encryption). With the same
package versions and fonts the output is byte-identical; the sha256 of every
file and font is recorded in ground_truth.json.

Writes (all under tests/fixtures/ocr/):
  good inputs  line_*.png, line_*.bmp, page_*.png/.jpg/.webp, doc_*.tiff, doc_*.pdf
  bad inputs   bad_*  (truncated PNG, empty file, PNG decompression bomb,
               text file named .png, truncated PDF, password-protected PDF)
  ground_truth.json
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import random
import struct
import sys
import zlib
from pathlib import Path

import reportlab
from reportlab import rl_config

# Must happen before reportlab.lib.pdfencrypt / pdfgen are imported: pdfencrypt
# reads the flag at import time to pick its fixed pseudo-random bytes.
rl_config.invariant = 1

from PIL import Image, ImageDraw, ImageFont  # noqa: E402
import PIL  # noqa: E402
from reportlab.lib.pdfencrypt import StandardEncryption  # noqa: E402
from reportlab.pdfbase import pdfmetrics  # noqa: E402
from reportlab.pdfbase.ttfonts import TTFont  # noqa: E402
from reportlab.pdfgen import canvas  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "ocr"
SEED = 20250611

FONTS = {
    # key: (path, debian package)
    "DejaVuSans": ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
    "DejaVuSans-Bold": ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core"),
    "DejaVuSerif": ("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", "fonts-dejavu-core"),
    "DejaVuSansMono": ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "fonts-dejavu-core"),
    "LiberationSans": ("/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf", "fonts-liberation2"),
    "LiberationSans-Bold": ("/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf", "fonts-liberation2"),
    "LiberationSerif": ("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf", "fonts-liberation2"),
}


def check_fonts() -> None:
    missing = [(k, p, pkg) for k, (p, pkg) in FONTS.items() if not Path(p).is_file()]
    if missing:
        pkgs = sorted({pkg for _, _, pkg in missing})
        msg = "\n".join(f"  {k}: {p} (Debian package {pkg})" for k, p, pkg in missing)
        raise SystemExit(
            f"missing fonts:\n{msg}\ninstall them with: apt-get install -y {' '.join(pkgs)}"
        )


def font(name: str, px: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: no raqm/HarfBuzz shaping, hence no "fi"/"ffi" ligatures and the same
    # glyph placement whether or not libraqm is available to Pillow.
    return ImageFont.truetype(FONTS[name][0], px, layout_engine=ImageFont.Layout.BASIC)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Texts. Only characters that are in the PP-OCRv4 rec dictionary (plain ASCII).
# --------------------------------------------------------------------------

SINGLE_LINES = [
    # file stem, font, px, fg, bg, text
    ("line_01_dejavusans_32", "DejaVuSans", 32, (0, 0, 0), (255, 255, 255),
     "Invoice No. 2024-0815, total due: $1,234.56 (net 30 days)."),
    ("line_02_liberationserif_30", "LiberationSerif", 30, (0, 0, 0), (255, 255, 255),
     "Meeting moved to 14:30 on 3 March 2025; room B-204!"),
    ("line_03_dejavusansmono_24", "DejaVuSansMono", 24, (0, 0, 0), (255, 255, 255),
     "ID: XK-7781/22 qty=12 price=0.75 EUR"),
    ("line_04_liberationsans_44", "LiberationSans", 44, (20, 30, 90), (255, 250, 225),
     "Shipping address: 42 Elm Street, Springfield."),
    ("line_05_dejavuserif_18", "DejaVuSerif", 18, (40, 40, 40), (255, 255, 255),
     "Call +1 (555) 010-9988 or email help@example.com?"),
]
BMP_LINE = ("line_06_liberationsansbold_36", "LiberationSans-Bold", 36, (0, 0, 0), (255, 255, 255),
            "Order #58213 confirmed - 3 items, 2 boxes & 1 bag.")

PARAGRAPH_TITLE = "Quarterly Operations Report"
PARAGRAPH_LINES = [
    "The warehouse in Rotterdam processed 18,420 orders in Q3,",
    "an increase of 12.5% compared with the previous quarter.",
    "Average delivery time fell from 4.2 to 3.6 days, while the",
    "return rate stayed below 2% for the third month in a row.",
    "Two new loading docks (D7 and D8) opened on 1 September.",
    "Staffing: 64 full-time employees, 11 part-time, 5 interns.",
    "Energy use per order dropped to 0.83 kWh; solar panels on",
    "the roof now cover about 40% of daytime consumption.",
    "Open issues: scanner firmware update, label printer jams,",
    "and the delayed migration of the inventory database.",
    "Next review: Friday, 14 November 2025 at 10:00 CET.",
    "Prepared by J. Smith, Operations Manager (ext. 2231).",
]

TWO_COL_TITLE = "Community Newsletter - Issue 17"
TWO_COL_LEFT = [
    "Library hours change on 1 May:",
    "Monday to Friday 9:00-18:00,",
    "Saturday 10:00-14:00, closed",
    "on Sundays and public holidays.",
    "New members get 2 free passes",
    "for the reading room, and the",
    "late fee drops to 0.20 per day.",
    "Questions? Ask at desk 3.",
]
TWO_COL_RIGHT = [
    "Park clean-up day is planned",
    "for Saturday, 17 May at 9:30.",
    "Bring gloves; bags and water",
    "are provided by the council.",
    "Last year 85 volunteers filled",
    "140 bags in under 4 hours!",
    "Children under 12 must come",
    "with an adult. Rain date: 24 May.",
]

ROT180_LINES = [
    "Delivery Note DN-33107",
    "Date: 2025-06-02",
    "Customer: Acme Tools Ltd.",
    "1 x Cordless drill, 18 V",
    "2 x Battery pack (4.0 Ah)",
    "5 x Drill bit set, 10 pcs",
    "Received in good condition.",
]

ROT90_LINES = [
    "Travel Expense Claim",
    "Employee: Maria Lopez, ID 4471",
    "Trip: Berlin - Vienna, 12-15 May",
    "Train tickets: 189.40",
    "Hotel (3 nights): 372.00",
    "Meals and taxis: 96.15",
    "Total claimed: 657.55",
    "Approved by: T. Becker",
]

TIFF_PAGES = [
    [
        "Meeting Minutes - Project Atlas",
        "Date: 9 October 2025, 15:00-16:10",
        "Present: A. Novak, B. Chen, C. Okafor",
        "1. Budget is 8% under plan after Q3.",
        "2. Beta release slips to 21 November.",
        "3. Support tickets: 37 open, 12 urgent.",
    ],
    [
        "Action Items",
        "A. Novak: update the risk log by Friday.",
        "B. Chen: fix login timeout (bug 4120).",
        "C. Okafor: book the venue for 40 people.",
        "Next meeting: 16 October 2025, 15:00.",
    ],
]


def price_rows(rng: random.Random) -> list[str]:
    items = ["Basic support", "Priority support", "On-site visit", "Training day",
             "Data migration", "Extra storage 100 GB", "Custom report", "Licence renewal"]
    rows = []
    for i, item in enumerate(items, 1):
        qty = rng.randint(1, 12)
        unit = rng.randint(1500, 98000) / 100
        rows.append((f"{i:02d}", item, str(qty), f"{unit:,.2f}", f"{qty * unit:,.2f}"))
    return rows


# --------------------------------------------------------------------------
# Raster helpers
# --------------------------------------------------------------------------

def draw_lines(draw: ImageDraw.ImageDraw, x: int, y0: int, lines, fnt, fg, step: int, max_x: int):
    """Draw lines with the baseline of line i at y0 + i*step; return axis-aligned ink boxes."""
    boxes = []
    for i, text in enumerate(lines):
        y = y0 + i * step
        bbox = draw.textbbox((x, y), text, font=fnt, anchor="ls")
        if bbox[2] > max_x:
            raise SystemExit(f"line too wide ({bbox[2]} > {max_x}): {text!r}")
        draw.text((x, y), text, fill=fg, font=fnt, anchor="ls")
        boxes.append(list(bbox))
    return boxes


def render_single_line(fnt_name, px, fg, bg, text, pad=None):
    fnt = font(fnt_name, px)
    pad = pad if pad is not None else max(12, px // 2)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=fnt, anchor="ls")
    w = (x1 - x0) + 2 * pad
    h = (y1 - y0) + 2 * pad
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    ox, oy = pad - x0, pad - y0
    draw.text((ox, oy), text, fill=fg, font=fnt, anchor="ls")
    bbox = list(draw.textbbox((ox, oy), text, font=fnt, anchor="ls"))
    return img, [bbox]


def render_text_page(size, title, lines, title_font, body_font, title_px, body_px,
                     margin=60, mode="RGB", bg="white", fg=(0, 0, 0)):
    w, h = size
    img = Image.new(mode, size, bg)
    draw = ImageDraw.Draw(img)
    boxes = []
    y = margin + title_px
    if title:
        boxes += draw_lines(draw, margin, y, [title], font(title_font, title_px), fg, 0, w - margin)
        y += int(title_px * 2.0)
    step = int(body_px * 1.75)
    boxes += draw_lines(draw, margin, y, lines, font(body_font, body_px), fg, step, w - margin)
    if boxes[-1][3] > h - margin // 2:
        raise SystemExit(f"page too short for its text: {boxes[-1]} vs height {h}")
    all_lines = ([title] if title else []) + list(lines)
    return img, all_lines, boxes


def rotate_boxes(boxes, w, h, transpose):
    """Map axis-aligned boxes through a PIL transpose of a w x h image."""
    out = []
    for x0, y0, x1, y1 in boxes:
        if transpose == Image.Transpose.ROTATE_180:
            out.append([w - x1, h - y1, w - x0, h - y0])
        elif transpose == Image.Transpose.ROTATE_270:  # 90 deg clockwise
            out.append([h - y1, x0, h - y0, x1])
        else:
            raise ValueError(transpose)
    return out


def save_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG", compress_level=9, dpi=(150, 150))


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(width=100_000, height=100_000, rows=40) -> bytes:
    """A structurally valid PNG header declaring width x height 8-bit grayscale
    (10^10 pixels, 10 GB raw) whose IDAT holds a complete zlib stream of only the
    first `rows` all-white rows (filter byte 0), then IEND. A decoder that trusts
    the header allocates ~10 GB before noticing the data is short; a careful one
    rejects it from the IHDR alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = (b"\x00" + b"\xff" * width) * rows
    idat = zlib.compress(raw, 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------

A4 = (595.2756, 841.8898)  # points (210 x 297 mm)


def register_pdf_fonts():
    for name in ("DejaVuSans", "DejaVuSans-Bold", "LiberationSerif"):
        pdfmetrics.registerFont(TTFont(name, FONTS[name][0]))


def pdf_pages(rng: random.Random):
    """Return the page contents: list of (list of (font, size, x_pt, y_from_top_pt, text))."""
    left = 60.0
    p1 = [("DejaVuSans-Bold", 18, left, 80, "Service Agreement SA-2025-118")]
    body1 = [
        "This agreement is made on 2 June 2025 between Northwind Data B.V.",
        "(the Provider) and Harbor Logistics Inc. (the Customer).",
        "1. Scope: the Provider hosts the Customer's document archive and",
        "runs nightly OCR on all new scans (about 2,500 pages per day).",
        "2. Availability: at least 99.5% per calendar month, measured",
        "every 5 minutes; planned maintenance is announced 72 hours ahead.",
        "3. Response times: urgent tickets within 1 hour, normal tickets",
        "within 1 business day (Monday-Friday, 08:00-18:00 CET).",
        "4. Fees are listed in the price schedule on page 2 and are",
        "invoiced monthly; payment is due within 30 days of the invoice.",
        "5. Either party may end this agreement with 90 days' notice.",
    ]
    y = 120
    for line in body1:
        p1.append(("DejaVuSans", 12, left, y, line))
        y += 20
    p1.append(("DejaVuSans", 10, left, 800, "Page 1 of 3"))

    p2 = [("DejaVuSans-Bold", 18, left, 80, "Price Schedule")]
    cols = [left, left + 40, left + 250, left + 310, left + 410]
    header = ("No.", "Item", "Qty", "Unit price", "Amount")
    y = 120
    for x, cell in zip(cols, header):
        p2.append(("DejaVuSans-Bold", 12, x, y, cell))
    total = 0.0
    for row in price_rows(rng):
        y += 24
        for x, cell in zip(cols, row):
            p2.append(("DejaVuSans", 12, x, y, cell))
        total += float(row[4].replace(",", ""))
    y += 36
    p2.append(("DejaVuSans-Bold", 12, left, y, f"Total (excl. VAT): {total:,.2f}"))
    p2.append(("DejaVuSans", 10, left, 800, "Page 2 of 3"))

    p3 = [("DejaVuSans-Bold", 18, left, 80, "General Terms")]
    body3 = [
        "Liability is limited to the fees paid in the last 12 months.",
        "All data stays in the EU; backups are kept for 35 days.",
        "The Customer may request an export of its data at any time;",
        "exports are delivered as PDF/A and JSON within 10 days.",
        "Signed for the Provider: E. de Vries, Director",
        "Signed for the Customer: R. Patel, COO",
    ]
    y = 120
    for line in body3:
        p3.append(("LiberationSerif", 13, left, y, line))
        y += 22
    p3.append(("DejaVuSans", 10, left, 800, "Page 3 of 3"))
    return [p1, p2, p3]


def page_lines(items):
    """Ground-truth reading order: group items with the same baseline into one line
    (left to right, cells joined by one space), lines top to bottom."""
    rows: dict[float, list] = {}
    for fnt, size, x, y, text in items:
        rows.setdefault(y, []).append((x, text))
    return [" ".join(t for _, t in sorted(cells)) for _, cells in sorted(rows.items())]


def write_pdf(path_or_buf, pages, encrypt=None):
    c = canvas.Canvas(path_or_buf, pagesize=A4, invariant=1, encrypt=encrypt, pageCompression=1)
    c.setTitle("docfleet OCR fixture")
    c.setAuthor("docfleet")
    c.setCreator("scripts/ocr/generate_fixtures.py")
    c.setProducer(f"ReportLab {reportlab.Version}")
    for items in pages:
        for fnt, size, x, y, text in items:
            c.setFont(fnt, size)
            c.drawString(x, A4[1] - y, text)
        c.showPage()
    c.save()


# --------------------------------------------------------------------------

def main() -> None:
    check_fonts()
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    files = []  # ground-truth entries for good inputs

    def entry(name, kind, fmt, pages, **extra):
        e = {"file": name, "type": kind, "format": fmt}
        e.update(extra)
        e["pages"] = pages
        files.append(e)

    def page_gt(img, lines, boxes, **extra):
        d = {"width": img.width, "height": img.height, "mode": img.mode}
        d.update(extra)
        d["lines"] = list(lines)
        d["line_boxes"] = boxes
        d["text"] = "\n".join(lines)
        return d

    # 1. single lines -----------------------------------------------------
    for stem, fnt, px, fg, bg, text in SINGLE_LINES:
        img, boxes = render_single_line(fnt, px, fg, bg, text)
        name = f"{stem}.png"
        save_png(img, OUT / name)
        entry(name, "line", "png", [page_gt(img, [text], boxes)], font=fnt, font_px=px)

    stem, fnt, px, fg, bg, text = BMP_LINE
    img, boxes = render_single_line(fnt, px, fg, bg, text)
    name = f"{stem}.bmp"
    img.save(OUT / name, format="BMP")
    entry(name, "line", "bmp", [page_gt(img, [text], boxes)], font=fnt, font_px=px)

    # 2. paragraph page (+ JPEG / WebP variants) ----------------------------
    img, lines, boxes = render_text_page((1000, 1100), PARAGRAPH_TITLE, PARAGRAPH_LINES,
                                         "DejaVuSans-Bold", "DejaVuSans", 34, 24)
    save_png(img, OUT / "page_paragraph.png")
    entry("page_paragraph.png", "paragraph", "png", [page_gt(img, lines, boxes)],
          font="DejaVuSans", font_px=24)
    img.save(OUT / "page_paragraph.jpg", format="JPEG", quality=80, subsampling=2, dpi=(150, 150))
    entry("page_paragraph.jpg", "paragraph_jpeg", "jpeg", [page_gt(img, lines, boxes)],
          font="DejaVuSans", font_px=24, variant_of="page_paragraph.png",
          encoding="JPEG quality 80, 4:2:0 chroma subsampling (Pillow/libjpeg-turbo)")
    img.save(OUT / "page_paragraph.webp", format="WEBP", quality=75, method=6, lossless=False)
    entry("page_paragraph.webp", "paragraph_webp", "webp", [page_gt(img, lines, boxes)],
          font="DejaVuSans", font_px=24, variant_of="page_paragraph.png",
          encoding="lossy WebP quality 75, method 6 (Pillow/libwebp)")

    # 3. two-column page ------------------------------------------------------
    w, h = 1000, 800
    img = Image.new("RGB", (w, h), (250, 250, 246))
    draw = ImageDraw.Draw(img)
    fg = (15, 15, 15)
    margin, gutter = 60, 90
    col_w = (w - 2 * margin - gutter) // 2
    boxes = draw_lines(draw, margin, margin + 36, [TWO_COL_TITLE], font("LiberationSans-Bold", 36), fg, 0, w - margin)
    body = font("LiberationSerif", 26)
    y0 = margin + 36 + 80
    step = 44
    xl, xr = margin, margin + col_w + gutter
    boxes += draw_lines(draw, xl, y0, TWO_COL_LEFT, body, fg, step, xl + col_w)
    boxes += draw_lines(draw, xr, y0, TWO_COL_RIGHT, body, fg, step, xr + col_w)
    assert boxes[-1][3] < h - 20
    lines = [TWO_COL_TITLE] + TWO_COL_LEFT + TWO_COL_RIGHT
    save_png(img, OUT / "page_two_column.png")
    entry("page_two_column.png", "two_column", "png",
          [page_gt(img, lines, boxes, columns=[{"x0": xl, "x1": xl + col_w}, {"x0": xr, "x1": xr + col_w}])],
          font="LiberationSerif", font_px=26,
          note="title spans both columns; left and right columns share baselines, so a plain "
               "top-to-bottom sort interleaves them. Reading order: title, left column, right column.")

    # 4. rotated pages --------------------------------------------------------
    up, lines, boxes = render_text_page((800, 700), None, ROT180_LINES, None, "DejaVuSans", 0, 30)
    img = up.transpose(Image.Transpose.ROTATE_180)
    save_png(img, OUT / "page_rot180.png")
    entry("page_rot180.png", "rotated_180", "png",
          [page_gt(img, lines, rotate_boxes(boxes, up.width, up.height, Image.Transpose.ROTATE_180),
                   upright_width=up.width, upright_height=up.height)],
          font="DejaVuSans", font_px=30, rotation_cw_degrees=180,
          note="content rotated by 180 degrees (upside down); ground truth is in upright reading order; "
               "line_boxes are in the stored (rotated) image's coordinates.")

    up, lines, boxes = render_text_page((800, 700), None, ROT90_LINES, None, "LiberationSans", 0, 30)
    img = up.transpose(Image.Transpose.ROTATE_270)  # PIL ROTATE_270 == 90 degrees clockwise
    save_png(img, OUT / "page_rot90cw.png")
    entry("page_rot90cw.png", "rotated_90", "png",
          [page_gt(img, lines, rotate_boxes(boxes, up.width, up.height, Image.Transpose.ROTATE_270),
                   upright_width=up.width, upright_height=up.height)],
          font="LiberationSans", font_px=30, rotation_cw_degrees=90,
          note="upright page rotated 90 degrees clockwise (text runs top to bottom, the page's top is on "
               "the right); rotate 90 degrees counter-clockwise to restore. Ground truth in upright order; "
               "line_boxes are in the stored (rotated) image's coordinates.")

    # 5. multi-page TIFF ------------------------------------------------------
    tiff_imgs, tiff_pages = [], []
    for i, plines in enumerate(TIFF_PAGES):
        img, lines, boxes = render_text_page((800, 600), plines[0], plines[1:], "DejaVuSans-Bold",
                                             "DejaVuSerif", 30, 24, mode="L", bg=255, fg=0)
        tiff_imgs.append(img)
        tiff_pages.append(page_gt(img, lines, boxes, page=i))
    tiff_imgs[0].save(OUT / "doc_two_pages.tiff", format="TIFF", save_all=True,
                      append_images=tiff_imgs[1:], compression="tiff_lzw", dpi=(150, 150))
    entry("doc_two_pages.tiff", "multipage_tiff", "tiff", tiff_pages,
          encoding="2 pages, 8-bit grayscale, LZW compression")

    # 6. multi-page PDF (vector text, embedded TrueType subsets) ----------------
    register_pdf_fonts()
    pages = pdf_pages(rng)
    buf = io.BytesIO()
    write_pdf(buf, pages)
    pdf_bytes = buf.getvalue()
    (OUT / "doc_three_pages.pdf").write_bytes(pdf_bytes)
    dpi = 150
    # pdfium (pypdfium2 render(scale=dpi/72)) sizes the bitmap as ceil(points * dpi / 72).
    px_w, px_h = math.ceil(A4[0] * dpi / 72), math.ceil(A4[1] * dpi / 72)
    pdf_gt = []
    for i, items in enumerate(pages):
        lines = page_lines(items)
        pdf_gt.append({"page": i, "width_pt": A4[0], "height_pt": A4[1],
                       "raster_dpi": dpi, "width": px_w, "height": px_h,
                       "lines": lines, "text": "\n".join(lines)})
    entry("doc_three_pages.pdf", "multipage_pdf", "pdf", pdf_gt,
          page_size=f"A4, 595.2756 x 841.8898 pt (210 x 297 mm); {px_w} x {px_h} px at 150 dpi "
                    "(ceil(pt * 150 / 72), as pdfium renders it)",
          encoding="vector text, TrueType subsets embedded (DejaVuSans, DejaVuSans-Bold, LiberationSerif), "
                   "no images; page 2 is a 5-column table whose cells on one baseline form one "
                   "ground-truth line (cells joined by a single space)")

    # 7. bad inputs -------------------------------------------------------------
    bad = []
    good_png = (OUT / "line_01_dejavusans_32.png").read_bytes()
    cut = len(good_png) // 2
    (OUT / "bad_truncated.png").write_bytes(good_png[:cut])
    bad.append({"file": "bad_truncated.png", "kind": "truncated_png",
                "detail": f"first {cut} of {len(good_png)} bytes of line_01_dejavusans_32.png "
                          "(valid signature and IHDR, IDAT cut short, no IEND)"})
    (OUT / "bad_empty.png").write_bytes(b"")
    bad.append({"file": "bad_empty.png", "kind": "empty_file", "detail": "zero bytes"})
    bomb = decompression_bomb_png()
    (OUT / "bad_bomb.png").write_bytes(bomb)
    bad.append({"file": "bad_bomb.png", "kind": "decompression_bomb",
                "detail": f"{len(bomb)} bytes; IHDR declares 100000 x 100000 8-bit grayscale "
                          "(1e10 pixels, 10 GB raw); the IDAT is a complete zlib stream of only the "
                          "first 40 rows, then IEND. Must be rejected from the declared size, "
                          "before any allocation of the full buffer.",
                "declared_width": 100000, "declared_height": 100000})
    (OUT / "bad_not_an_image.png").write_bytes(
        b"This is a plain text file with a .png extension.\nIt is not an image.\n")
    bad.append({"file": "bad_not_an_image.png", "kind": "wrong_content",
                "detail": "ASCII text file named .png"})
    cut = len(pdf_bytes) * 6 // 10
    (OUT / "bad_truncated.pdf").write_bytes(pdf_bytes[:cut])
    bad.append({"file": "bad_truncated.pdf", "kind": "truncated_pdf",
                "detail": f"first {cut} of {len(pdf_bytes)} bytes of doc_three_pages.pdf "
                          "(no xref table, no trailer, no %%EOF)"})
    buf = io.BytesIO()
    write_pdf(buf, [pages[0]], encrypt=StandardEncryption("docfleet-user", ownerPassword="docfleet-owner",
                                                          strength=128))
    (OUT / "bad_encrypted.pdf").write_bytes(buf.getvalue())
    bad.append({"file": "bad_encrypted.pdf", "kind": "encrypted_pdf",
                "detail": "page 1 of doc_three_pages.pdf, Standard security handler, RC4 128-bit "
                          "(V=2, R=3), user password 'docfleet-user', owner password 'docfleet-owner'; "
                          "cannot be opened without a password",
                "user_password": "docfleet-user", "owner_password": "docfleet-owner"})

    # hashes ------------------------------------------------------------------
    for e in files + bad:
        e["sha256"] = sha256((OUT / e["file"]).read_bytes())
        e["bytes"] = (OUT / e["file"]).stat().st_size

    gt = {
        "generator": "scripts/ocr/generate_fixtures.py",
        "seed": SEED,
        "versions": {"python": sys.version.split()[0], "pillow": PIL.__version__,
                     "reportlab": reportlab.Version},
        "fonts": {k: {"path": p, "debian_package": pkg, "sha256": sha256(Path(p).read_bytes())}
                  for k, (p, pkg) in FONTS.items()},
        "conventions": {
            "lines": "ground-truth text lines in human reading order (two-column page: title, "
                     "left column, right column; rotated pages: upright order)",
            "text": "lines joined with '\\n'",
            "line_boxes": "per line, axis-aligned ink box [x0, y0, x1, y1] in pixels of the stored "
                          "image (x1/y1 exclusive, from Pillow textbbox); raster files only",
            "width/height": "pixel size of the stored image; for PDF pages the size of a 150 dpi "
                            "rasterisation (width_pt/height_pt give the page size in points)",
        },
        "files": files,
        "bad_inputs": bad,
    }
    (OUT / "ground_truth.json").write_text(json.dumps(gt, indent=2, ensure_ascii=False) + "\n")

    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    for e in files + bad:
        print(f"{e['bytes']:>9}  {e['file']}")
    print(f"total size of {OUT.relative_to(REPO)}: {total} bytes")


if __name__ == "__main__":
    main()
