#!/usr/bin/env python3
"""Generate the reading-order fixtures in tests/fixtures/ocr/layout/ (committed; rerun only to change them).

Same setup as generate_fixtures.py (Pillow from scripts/ocr/requirements-v6.txt or
requirements.txt; Debian fonts-dejavu-core and fonts-liberation2), from the repo root:

    ~/.cache/docfleet/ocr-v6-venv/bin/python scripts/ocr/generate_layout_fixtures.py

Each page is drawn from the layout below (text lines at fixed positions, figures as plain
shapes without text). The reading order every page must be read in is NOT written here: it is
the hand-written tests/fixtures/ocr/layout/expected.json (lines in reading order, per page). This
script only checks that each page's expected lines are exactly the lines it draws (the same
multiset), so the hand-written order cannot drift from the pictures; it never writes that file.

Writes tests/fixtures/ocr/layout/*.png and manifest.json (sha256, size, drawn line boxes).
Deterministic: no randomness; Pillow's BASIC text layout.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import PIL
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "ocr" / "layout"

# The same font files as generate_fixtures.py (which also needs reportlab; this script needs only Pillow).
FONTS = {
    "DejaVuSans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "DejaVuSans-Bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "DejaVuSansMono": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "LiberationSans": "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "LiberationSans-Bold": "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "LiberationSerif": "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
}


class base:  # noqa: N801 - the helpers generate_fixtures.py has, under the same names
    PIL = PIL

    @staticmethod
    def check_fonts() -> None:
        missing = [p for p in FONTS.values() if not Path(p).is_file()]
        if missing:
            raise SystemExit(f"missing fonts {missing}: apt-get install -y fonts-dejavu-core fonts-liberation2")

    @staticmethod
    def font(name: str, px: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(FONTS[name], px, layout_engine=ImageFont.Layout.BASIC)

    @staticmethod
    def save_png(img: Image.Image, path: Path) -> None:
        img.save(path, format="PNG", compress_level=9, dpi=(150, 150))


class Page:
    """An upright page being drawn; records every text line and its ink box."""

    def __init__(self, w: int, h: int):
        self.img = Image.new("RGB", (w, h), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.lines: list[tuple[str, list[int]]] = []

    def text(self, x: int, baseline: int, s: str, face: str, px: int, max_x: int | None = None, fg=(0, 0, 0)):
        fnt = base.font(face, px)
        box = list(self.draw.textbbox((x, baseline), s, font=fnt, anchor="ls"))
        limit = max_x if max_x is not None else self.img.width - 20
        if box[2] > limit or box[3] > self.img.height - 5:
            raise SystemExit(f"line outside its space ({box} vs x <= {limit}): {s!r}")
        self.draw.text((x, baseline), s, fill=fg, font=fnt, anchor="ls")
        self.lines.append((s, box))
        return box

    def para(self, x: int, baseline: int, lines, face: str, px: int, step: int, max_x: int | None = None):
        """Lines one under the other; returns the baseline after the last one."""
        for i, s in enumerate(lines):
            self.text(x, baseline + i * step, s, face, px, max_x)
        return baseline + len(lines) * step

    def right(self, x1: int, baseline: int, s: str, face: str, px: int):
        """A line ending at x1 (right-aligned)."""
        fnt = base.font(face, px)
        b = self.draw.textbbox((0, baseline), s, font=fnt, anchor="ls")
        return self.text(x1 - (b[2] - b[0]), baseline, s, face, px)

    def centre(self, cx: int, baseline: int, s: str, face: str, px: int):
        fnt = base.font(face, px)
        b = self.draw.textbbox((0, baseline), s, font=fnt, anchor="ls")
        return self.text(cx - (b[2] - b[0]) // 2, baseline, s, face, px)

    def figure(self, box):
        """A chart without any text: frame, bars and a disc."""
        x0, y0, x1, y1 = box
        d = self.draw
        d.rectangle(box, fill=(236, 240, 248), outline=(90, 90, 120), width=3)
        n = 6
        bw = (x1 - x0 - 80) // (2 * n)
        for i in range(n):
            h = (y1 - y0 - 60) * (3 + (i * 5) % 7) // 10
            bx = x0 + 40 + 2 * i * bw
            d.rectangle([bx, y1 - 30 - h, bx + bw, y1 - 30], fill=(70 + 25 * i, 110, 190 - 20 * i))
        r = (y1 - y0) // 5
        d.ellipse([x1 - 40 - 2 * r, y0 + 25, x1 - 40, y0 + 25 + 2 * r], fill=(220, 120, 60))
        d.line([x0 + 30, y1 - 30, x1 - 30, y1 - 30], fill=(40, 40, 40), width=2)

    def rule(self, y: int, x0: int, x1: int):
        self.draw.line([x0, y, x1, y], fill=(60, 60, 60), width=2)


SERIF, SANS, SANS_B, MONO = "LiberationSerif", "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
LSANS, LSANS_B = "LiberationSans", "LiberationSans-Bold"


def two_column_subheading() -> Page:
    """Failure (a): the right column starts with a bold subheading level with the left column's
    first line, across a narrow gutter."""
    p = Page(1000, 760)
    p.text(50, 80, "Harbour Town Weekly - Spring Edition", SANS_B, 34)
    left = [
        "The ferry timetable changes on",
        "Monday: the first boat leaves",
        "at 6:15 instead of 6:40, and the",
        "last one returns at 22:30. Fares",
        "stay the same for residents,",
        "while visitors pay 4.50 per trip.",
        "Bicycles travel free of charge",
        "on all crossings before noon.",
        "Tickets are sold at the kiosk.",
    ]
    p.para(50, 160, left, SERIF, 26, 44, max_x=485)
    p.text(515, 160, "Market news", LSANS_B, 28)
    right = [
        "The Saturday market moves to",
        "the old fish hall from April.",
        "Twelve new stalls will sell local",
        "cheese, bread and vegetables,",
        "and the cafe opens at 8:00.",
        "Parking is free after 14:00 on",
        "market days for all visitors.",
        "Stall holders meet on Thursday.",
    ]
    p.para(515, 204, right, SERIF, 26, 44, max_x=960)
    return p


def label_value() -> Page:
    """Failure (b): two groups of short lines side by side on aligned rows."""
    p = Page(1000, 720)
    p.text(60, 90, "Customer Account Summary", SANS_B, 32)
    rows = [
        ("Account holder:", "Maria Jensen"),
        ("Customer ID:", "CX-40817"),
        ("Date of birth:", "14 June 1986"),
        ("Phone:", "+45 3312 7790"),
        ("Plan:", "Business Plus"),
        ("Billing cycle:", "Monthly"),
        ("Balance due:", "EUR 218.40"),
    ]
    for i, (k, v) in enumerate(rows):
        y = 180 + 52 * i
        p.text(60, y, k, SANS, 24, max_x=330)
        p.text(400, y, v, SANS, 24)
    p.para(60, 580, ["Payments received after the 25th are booked", "in the following billing cycle."], SANS, 24, 40)
    return p


def three_columns() -> Page:
    p = Page(1200, 800)
    p.text(50, 80, "Regional Weather Outlook for the Week", SANS_B, 34)
    cols = [
        [
            "North: light rain on",
            "Monday and Tuesday,",
            "clearing by Wednesday",
            "with highs near 14 C.",
            "Winds from the west",
            "at 20 to 30 km/h.",
        ],
        [
            "Centre: mostly dry and",
            "sunny all week long,",
            "with morning fog in",
            "the river valleys and",
            "afternoon highs that",
            "reach 19 C on Friday.",
        ],
        [
            "South: warm and humid,",
            "thunderstorms likely",
            "on Thursday evening.",
            "Highs of 24 C and lows",
            "around 15 C at night.",
            "Beaches stay open.",
        ],
    ]
    for i, lines in enumerate(cols):
        x = 50 + 380 * i
        p.para(x, 170, lines, SERIF, 27, 46, max_x=x + 350)
    p.para(50, 520, ["All forecasts are updated twice a day at 6:00 and 18:00."], SANS, 24, 40)
    return p


def column_figure() -> Page:
    """Two columns, interrupted by a full-width figure with its caption, then two columns again."""
    p = Page(1000, 1250)
    p.text(50, 80, "Annual Energy Review", SANS_B, 34)
    top_l = [
        "Wind farms produced 31% of",
        "the electricity used in the",
        "region last year, up from",
        "24% the year before.",
    ]
    top_r = [
        "Solar output doubled after",
        "the new park near Velden",
        "was connected to the grid",
        "in early March.",
    ]
    p.para(50, 150, top_l, SERIF, 26, 42, max_x=470)
    p.para(530, 150, top_r, SERIF, 26, 42, max_x=960)
    p.figure([50, 340, 950, 700])
    p.text(50, 745, "Figure 1: Monthly production by source, in gigawatt hours.", SANS, 22)
    bot_l = [
        "Gas plants ran for only 1,900",
        "hours, mostly in the cold",
        "weeks of January and the",
        "calm days of November.",
    ]
    bot_r = [
        "Storage capacity grew to",
        "420 MWh with two battery",
        "sites; a third one opens",
        "next autumn in Osterby.",
    ]
    p.para(50, 830, bot_l, SERIF, 26, 42, max_x=470)
    p.para(530, 830, bot_r, SERIF, 26, 42, max_x=960)
    return p


def table() -> Page:
    p = Page(1000, 800)
    p.text(60, 85, "Spare Parts Price List", SANS_B, 32)
    p.para(60, 150, ["Prices are per unit and exclude shipping costs."], SANS, 24, 40)
    cols = [60, 240, 560, 760]
    header = ["Part no.", "Description", "Stock", "Price"]
    rows = [
        ["A-1001", "Drive belt", "42", "18.90"],
        ["A-1002", "Air filter", "17", "9.45"],
        ["B-2040", "Brake pad set", "8", "36.00"],
        ["C-3105", "Wiper blade", "120", "7.25"],
        ["C-3190", "Headlight bulb", "65", "4.80"],
    ]
    for c, h in zip(cols, header):
        p.text(c, 240, h, SANS_B, 24)
    p.rule(256, 50, 900)
    for r, row in enumerate(rows):
        for c, cell in zip(cols, row):
            p.text(c, 300 + 48 * r, cell, SANS, 24)
    p.para(60, 600, ["Orders above 200.00 ship free within the country."], SANS, 24, 40)
    return p


def header_footer() -> Page:
    p = Page(1000, 1100)
    p.text(60, 50, "Northwind Logistics - Internal Report", LSANS, 20)
    p.right(940, 50, "March 2025", LSANS, 20)
    p.rule(66, 60, 940)
    p.text(60, 150, "Fleet Maintenance", SANS_B, 34)
    body = [
        "All 48 delivery vans passed their spring inspection,",
        "and six of them received new tyres. The two oldest",
        "trucks will be replaced by electric models in June.",
        "",
        "Workshop hours are now 7:00 to 19:00 on weekdays.",
        "Drivers should book a slot at least two days ahead",
        "and report any warning lights the same day.",
    ]
    y = 230
    for s in body:
        if s:
            p.text(60, y, s, SANS, 24)
        y += 42 if s else 30
    p.rule(1030, 60, 940)
    p.text(60, 1062, "Confidential", LSANS, 20)
    p.right(940, 1062, "Page 3 of 12", LSANS, 20)
    return p


def figure_caption() -> Page:
    """Two columns; the left one holds a figure with its caption under it."""
    p = Page(1000, 1000)
    p.text(50, 80, "Garden Survey Results", SANS_B, 34)
    p.para(50, 150, ["Most gardens in the survey", "grow vegetables as well", "as flowers."], SERIF, 26, 42, max_x=470)
    p.figure([50, 300, 470, 620])
    p.para(50, 660, ["Figure 2: Share of gardens", "by main crop."], SANS, 20, 30, max_x=470)
    p.para(50, 760, ["Tomatoes lead the list,", "followed by beans."], SERIF, 26, 42, max_x=470)
    right = [
        "The survey asked 350 house-",
        "holds about their gardens",
        "between May and August.",
        "Two thirds water by hand,",
        "and one in five collects",
        "rain water in barrels.",
        "Compost heaps are found",
        "in almost every garden,",
        "while only a few use",
        "chemical fertiliser.",
    ]
    p.para(530, 150, right, SERIF, 26, 42, max_x=960)
    return p


ROTATED = [
    "Visitor Information",
    "The museum opens at 9:30 every",
    "day except Monday. Guided tours",
    "start at 11:00 and 15:00 at the",
    "main entrance and last one hour.",
    "Tickets cost 12.00 for adults;",
    "children under 12 enter free.",
]


def rotated_page() -> Page:
    p = Page(860, 620)
    p.text(60, 90, ROTATED[0], SANS_B, 32)
    p.para(60, 170, ROTATED[1:], LSANS, 28, 48)
    return p


def mixed() -> Page:
    """Header, title, full-width intro, two columns with subheadings, a list, a small table,
    a footer with the page number."""
    p = Page(1100, 1400)
    p.text(60, 50, "City Council Bulletin", LSANS, 20)
    p.right(1040, 50, "No. 212", LSANS, 20)
    p.text(60, 140, "Budget 2026 Approved", SANS_B, 40)
    p.para(60, 210, [
        "The council approved next year's budget on Tuesday with 21 votes",
        "in favour and 6 against, after a debate of almost four hours.",
    ], SANS, 24, 40)
    p.text(60, 330, "Main investments", LSANS_B, 28)
    left = [
        "1. New primary school in the",
        "west district, 14.2 million.",
        "2. Road repairs on the ring",
        "road, 3.8 million.",
        "3. Sixty new street lights.",
    ]
    p.para(60, 380, left, SERIF, 26, 42, max_x=520)
    p.text(580, 330, "What changes for you", LSANS_B, 28)
    right = [
        "Waste collection fees stay",
        "the same, but the parking",
        "fee in the centre rises",
        "from 2.00 to 2.40 per hour.",
        "Swimming pools keep their",
        "summer opening hours.",
    ]
    p.para(580, 380, right, SERIF, 26, 42, max_x=1040)
    p.text(60, 700, "Spending by department (million)", LSANS_B, 26)
    cols = [60, 420, 640]
    p.text(cols[0], 760, "Department", SANS_B, 24)
    p.text(cols[1], 760, "2025", SANS_B, 24)
    p.text(cols[2], 760, "2026", SANS_B, 24)
    p.rule(776, 50, 800)
    for r, (d, a, b) in enumerate([("Education", "41.5", "48.0"), ("Transport", "22.1", "24.9"), ("Culture", "6.3", "6.1")]):
        p.text(cols[0], 820 + 46 * r, d, SANS, 24)
        p.text(cols[1], 820 + 46 * r, a, SANS, 24)
        p.text(cols[2], 820 + 46 * r, b, SANS, 24)
    p.para(60, 1030, [
        "The full budget can be read at the town hall or on the",
        "council website from next Monday.",
    ], SANS, 24, 40)
    p.centre(550, 1360, "- 4 -", LSANS, 20)
    return p


def digits() -> Page:
    """Digits next to letters: dates, units and codes where 1/I/l and 0/O look alike."""
    p = Page(1000, 760)
    p.text(60, 80, "Delivery Notes", LSANS_B, 30)
    lines = [
        "Shipped on 1 March 2024, weight 10 kg.",
        "Received 11 April 2024 at 10:15, 2 boxes.",
        "Invoice 2024-1107 paid on 30 January.",
        "Pallet 1 of 3, height 110 cm, 1 l oil.",
        "Batch 1O-Il: 101 items, 0.5 mm film.",
        "Order 1001 due 1 December, 100 ml.",
        "Lot 7701 expires 01/11/2027, 4 l.",
        "Call 0118 200 1011 before 11 am.",
    ]
    p.para(60, 150, lines, LSANS, 22, 40)
    small = ["Room 101, floor 1, 10 desks, 1 printer.", "Code A-10 is valid until 1 May 2026."]
    p.para(60, 520, small, SERIF, 17, 34)
    return p


PAGES = [
    ("two_column_subheading.png", two_column_subheading, None),
    ("label_value.png", label_value, None),
    ("three_columns.png", three_columns, None),
    ("column_figure.png", column_figure, None),
    ("table.png", table, None),
    ("header_footer.png", header_footer, None),
    ("figure_caption.png", figure_caption, None),
    ("rotated_90.png", rotated_page, Image.Transpose.ROTATE_270),  # 90 degrees clockwise
    ("rotated_180.png", rotated_page, Image.Transpose.ROTATE_180),
    ("rotated_270.png", rotated_page, Image.Transpose.ROTATE_90),  # 270 degrees clockwise
    ("mixed.png", mixed, None),
    ("digits.png", digits, None),
]


def main() -> None:
    base.check_fonts()
    OUT.mkdir(parents=True, exist_ok=True)
    expected = json.loads((OUT / "expected.json").read_text())
    by_file = {p["file"]: p for p in expected["pages"]}
    manifest = []
    for name, draw, turn in PAGES:
        page = draw()
        img = page.img if turn is None else page.img.transpose(turn)
        base.save_png(img, OUT / name)
        drawn = Counter(s for s, _ in page.lines)
        want = by_file.get(name)
        if want is None:
            raise SystemExit(f"{name}: no entry in expected.json")
        if Counter(want["lines"]) != drawn:
            missing, extra = drawn - Counter(want["lines"]), Counter(want["lines"]) - drawn
            raise SystemExit(f"{name}: expected.json lines differ from the drawn ones\n"
                             f"  drawn, not expected: {sorted(missing)}\n  expected, not drawn: {sorted(extra)}")
        data = (OUT / name).read_bytes()
        manifest.append({
            "file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "width": img.width, "height": img.height,
            "rotation_cw_degrees": {None: 0, Image.Transpose.ROTATE_270: 90,
                                    Image.Transpose.ROTATE_180: 180, Image.Transpose.ROTATE_90: 270}[turn],
            "upright_line_boxes": [{"text": s, "box": b} for s, b in page.lines],
        })
    blank = Image.new("RGB", (800, 600), "white")
    base.save_png(blank, OUT / "blank.png")
    strip = Page(20000, 50)
    x = 20
    for i in range(12):
        x = strip.text(x, 36, f"Section {i + 1}: strip of text {i * 7 + 3} long", SANS, 24)[2] + 600
    base.save_png(strip.img, OUT / "strip_20000x50.png")
    for name in ["blank.png", "strip_20000x50.png"]:
        data = (OUT / name).read_bytes()
        manifest.append({"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    (OUT / "manifest.json").write_text(json.dumps({"pillow": base.PIL.__version__, "files": manifest}, indent=1) + "\n")
    print(f"wrote {len(manifest)} files to {OUT}")


if __name__ == "__main__":
    main()
