#!/usr/bin/env python3
"""Writes tests/fixtures/doctags/: DocTags strings and docling-core's exports of them.

Each case is a DocTags document as a VLM page loop would save it (pages joined by
`<page_break>`). For each, docling-core (the version pinned in requirements.txt) loads it with
`DocTagsDocument.from_multipage_doctags_and_images` + `DoclingDocument.load_from_doctags`, on blank
page images of known sizes, and exports Markdown, HTML and `export_to_dict()`. core/tests/
doctags_parity.rs compares docfleet's exports with these files.

Truncated cases (a page cut by the token limit) also get `<name>.closed.{md,html,json}`:
docling-core's exports of the same text with the missing closing tags appended. docling-core keeps only the
existence of an unclosed element (empty text); docfleet keeps what was generated, which is
exactly docling-core's output for the closed text (see tests/fixtures/doctags/README.md).

Usage: python scripts/doctags/make_corpus.py [OUT_DIR]   (default tests/fixtures/doctags)
"""

import json
import sys
from pathlib import Path

from PIL import Image

from docling_core.types.doc import DoclingDocument
from docling_core.types.doc.doctags import DocTagsDocument

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "doctags"

# Page sizes in pixels, cycled over pages: the JSON boxes are checked in page pixels.
PAGE_SIZES = [(612, 792), (1000, 800), (595, 842)]


def loc(l, t, r, b):
    return f"<loc_{l}><loc_{t}><loc_{r}><loc_{b}>"


L = loc(20, 30, 480, 60)

# (name, doctags, truncated_suffix): truncated_suffix is what closes a truncated page.
CASES = [
    ("text", f"<doctag><text>{L}Hello, world.</text></doctag>", None),
    (
        "headings",
        "<doctag>"
        + f"<title>{loc(40, 20, 460, 40)}A Title</title>"
        + "".join(
            f"<section_header_level_{n}>{loc(40, 40 + 10 * n, 460, 48 + 10 * n)}Level {n}</section_header_level_{n}>"
            for n in range(1, 7)
        )
        + f"<text>{loc(40, 120, 460, 140)}Body.</text></doctag>",
        None,
    ),
    (
        "furniture",
        f"<doctag><page_header>{loc(10, 5, 200, 15)}Journal 12</page_header>"
        f"<text>{L}Body text.</text><footnote>{loc(20, 450, 480, 460)}1 A footnote.</footnote>"
        f"<page_footer>{loc(240, 480, 260, 490)}7</page_footer></doctag>",
        None,
    ),
    (
        "escaping",
        "<doctag>"
        f"<text>{L}Stars *a* and **b**, under_score and __init__, # hash, 1. not a list</text>"
        f"<text>{L}Less < than & ampersand > greater, \"quotes\" and 'apos'</text>"
        f"<text>{L}P < 0.05 and P > 0.01</text>"
        f"<text>{L}Pipes | and backslash \\ and `ticks` and [link](x) and ~tilde~</text>"
        f"<section_header_level_1>{L}Head_with *stars* & amp</section_header_level_1>"
        f"<text>{L}- dash start</text>"
        f"<text>{L}+ plus start</text>"
        f"<text>{L}&amp; already &lt;escaped&gt;</text>"
        f"<text>{L}Unicode: café, 東京, emoji 🙂, nbsp\u00a0here</text>"
        "</doctag>",
        None,
    ),
    (
        "lists",
        "<doctag>"
        f"<unordered_list><list_item>{loc(30, 40, 400, 50)}First bullet</list_item>"
        f"<list_item>{loc(30, 52, 400, 62)}Second *bullet*</list_item></unordered_list>"
        f"<ordered_list><list_item>{loc(30, 70, 400, 80)}One</list_item>"
        f"<list_item>{loc(30, 82, 400, 92)}Two</list_item>"
        f"<list_item>{loc(30, 94, 400, 104)}Three</list_item></ordered_list>"
        f"<text>{loc(30, 110, 400, 120)}After the lists.</text>"
        "</doctag>",
        None,
    ),
    (
        "nested_lists",
        "<doctag>"
        f"<unordered_list><list_item>{loc(30, 40, 400, 50)}Outer one</list_item>"
        f"<unordered_list><list_item>{loc(50, 52, 400, 62)}Inner a</list_item>"
        f"<list_item>{loc(50, 64, 400, 74)}Inner b</list_item></unordered_list>"
        f"<list_item>{loc(30, 76, 400, 86)}Outer two</list_item></unordered_list>"
        f"<ordered_list><list_item>{loc(30, 90, 400, 100)}Step</list_item>"
        f"<unordered_list><list_item>{loc(50, 102, 400, 112)}Detail</list_item></unordered_list>"
        f"<list_item>{loc(30, 114, 400, 124)}Next step</list_item></ordered_list>"
        f"<text>{loc(30, 130, 400, 140)}Tail.</text>"
        "</doctag>",
        None,
    ),
    (
        "code",
        "<doctag>"
        f"<code>{loc(20, 40, 480, 120)}<_Python_>def f(x):\n    return x * 2  # _under_</code>"
        f"<code>{loc(20, 130, 480, 160)}<_unknown_>plain code</code>"
        f"<code>{loc(20, 170, 480, 200)}echo no language</code>"
        f"<code>{loc(20, 210, 480, 240)}<_C++_>int main() {{ return a<b; }}</code>"
        "</doctag>",
        None,
    ),
    (
        "formula",
        "<doctag>"
        f"<text>{L}Euler:</text>"
        f"<formula>{loc(100, 70, 400, 90)}e^{{i\\pi}} + 1 = 0</formula>"
        f"<formula>{loc(100, 100, 400, 120)}a_1 < b_2 * c</formula>"
        f"<formula>{loc(100, 130, 400, 140)}</formula>"
        "</doctag>",
        None,
    ),
    (
        "pictures",
        "<doctag>"
        f"<picture>{loc(50, 50, 450, 250)}</picture>"
        f"<picture>{loc(50, 260, 450, 300)}<logo><caption>{loc(50, 302, 450, 312)}Figure 1: the logo.</caption></picture>"
        f"<picture>{loc(50, 320, 450, 400)}<bar_chart></picture>"
        f"<picture>{loc(50, 410, 450, 450)}<natural_image><caption>{loc(50, 452, 450, 462)}A photo_of *things*</caption></picture>"
        f"<picture>{loc(50, 470, 450, 490)}<line></picture>"
        "</doctag>",
        None,
    ),
    (
        "chart",
        "<doctag>"
        f"<chart>{loc(50, 50, 450, 250)}<bar_chart><caption>{loc(50, 252, 450, 262)}Sales by year</caption>"
        "<ched>Year<ched>Sales<nl><fcel>2024<fcel>10<nl><fcel>2025<fcel>12<nl></chart>"
        f"<text>{loc(50, 270, 450, 280)}After chart.</text>"
        "</doctag>",
        None,
    ),
    (
        "table_simple",
        "<doctag>"
        f"<otsl>{loc(40, 60, 460, 200)}<ched>Name<ched>Value<nl><fcel>alpha<fcel>1<nl><fcel>beta<fcel>2<nl></otsl>"
        "</doctag>",
        None,
    ),
    (
        "table_spans",
        "<doctag>"
        f"<otsl>{loc(40, 60, 460, 200)}<ched>Group<lcel><ched>Other<nl>"
        "<ched>A<ched>B<ucel><nl>"
        "<rhed>r1<fcel>1<fcel>2<nl>"
        "<rhed>r2<fcel>3<lcel><nl>"
        "<fcel>big<lcel><ecel><nl>"
        "<ucel><xcel><fcel>z<nl>"
        "<srow>Section row<lcel><lcel><nl></otsl>"
        "</doctag>",
        None,
    ),
    (
        "table_caption",
        "<doctag>"
        f"<otsl>{loc(40, 60, 460, 200)}<caption>{loc(40, 40, 460, 55)}Table 1: pipes | and *stars*</caption>"
        "<ched>a|b<ched>under_score<nl><fcel>x & y<fcel>1 < 2<nl><ecel><fcel>#3<nl></otsl>"
        "</doctag>",
        None,
    ),
    (
        "table_ragged",
        "<doctag>"
        f"<otsl>{loc(40, 60, 460, 200)}<fcel>a<fcel>b<fcel>c<nl><fcel>d<nl><fcel>e<fcel>f<nl></otsl>"
        "</doctag>",
        None,
    ),
    (
        "misc_tags",
        "<doctag>"
        f"<checkbox_selected>{L}Done item</checkbox_selected>"
        f"<checkbox_unselected>{L}Open item</checkbox_unselected>"
        f"<paragraph>{L}A paragraph tag</paragraph>"
        f"<text>{L}Inline <b>bold</b> tag</text>"
        "</doctag>",
        None,
    ),
    (
        "multipage",
        f"<doctag><page_header>{loc(10, 5, 200, 15)}Header p1</page_header>"
        f"<section_header_level_1>{L}Chapter</section_header_level_1>"
        f"<text>{loc(20, 70, 480, 90)}Page one text.</text></doctag>"
        "<page_break>"
        f"<doctag><text>{loc(20, 30, 480, 50)}Page two text.</text>"
        f"<unordered_list><list_item>{loc(30, 60, 400, 70)}p2 item</list_item></unordered_list>"
        f"<page_footer>{loc(240, 480, 260, 490)}2</page_footer></doctag>"
        "<page_break>"
        f"<doctag><otsl>{loc(40, 60, 460, 200)}<fcel>p3<fcel>table<nl></otsl></doctag>",
        None,
    ),
    (
        "no_wrapper",
        f"<text>{L}No doctag wrapper.</text>\n<text>{loc(20, 70, 480, 90)}Second line.</text>\n",
        None,
    ),
    (
        "whitespace",
        f"<doctag>\n  <text>{L}  padded text  </text>\n<text>{L}line one\nline two</text>\n</doctag>",
        None,
    ),
    (
        "no_loc",
        "<doctag><text>Text without location</text><picture></picture><otsl><fcel>t<nl></otsl></doctag>",
        None,
    ),
    (
        "trunc_text",
        f"<doctag><text>{L}Complete.</text><text>{loc(20, 70, 480, 90)}This page was cut by the tok",
        "</text></doctag>",
    ),
    (
        "trunc_list",
        f"<doctag><text>{L}Intro.</text><unordered_list><list_item>{loc(30, 70, 400, 80)}one</list_item>"
        f"<list_item>{loc(30, 82, 400, 92)}tw",
        "</list_item></unordered_list></doctag>",
    ),
    (
        "trunc_table",
        f"<doctag><text>{L}Intro.</text><otsl>{loc(40, 60, 460, 200)}<ched>A<ched>B<nl><fcel>1<fcel>2<nl><fcel>3",
        "</otsl></doctag>",
    ),
    (
        "trunc_heading",
        f"<doctag><section_header_level_2>{L}Cut head",
        "</section_header_level_2></doctag>",
    ),
    (
        "trunc_in_loc",
        f"<doctag><text>{L}Complete.</text><text><loc_20><loc_7",
        None,
    ),
]


def export(doctags: str):
    pages = (
        doctags.removeprefix("<doctag>")
        .removesuffix("</doctag>")
        .split("<page_break>")
    )
    sizes = [PAGE_SIZES[i % len(PAGE_SIZES)] for i in range(len(pages))]
    images = [Image.new("RGB", s, "white") for s in sizes]
    dt = DocTagsDocument.from_multipage_doctags_and_images(doctags, images)
    doc = DoclingDocument.load_from_doctags(dt, document_name="corpus")
    d = doc.export_to_dict()
    # Page and picture images are base64 PNGs of blank pages: not modelled, left out.
    for page in d.get("pages", {}).values():
        page.pop("image", None)
    for pic in d.get("pictures", []):
        pic.pop("image", None)
    return sizes, doc.export_to_markdown(), doc.export_to_html(), d


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for name, doctags, closing in CASES:
        sizes, md, html, d = export(doctags)
        (OUT / f"{name}.dt").write_text(doctags, encoding="utf-8")
        (OUT / f"{name}.md").write_text(md, encoding="utf-8")
        (OUT / f"{name}.html").write_text(html, encoding="utf-8")
        (OUT / f"{name}.json").write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        entry = {"name": name, "page_sizes": sizes, "truncated": closing is not None or name.startswith("trunc")}
        if closing is not None:
            _, closed_md, closed_html, closed_d = export(doctags + closing)
            (OUT / f"{name}.closed.md").write_text(closed_md, encoding="utf-8")
            (OUT / f"{name}.closed.html").write_text(closed_html, encoding="utf-8")
            (OUT / f"{name}.closed.json").write_text(
                json.dumps(closed_d, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            entry["closing"] = closing
        index.append(entry)
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(index)} cases to {OUT}")


if __name__ == "__main__":
    main()
