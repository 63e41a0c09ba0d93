//! A page's blocks: the lines of one paragraph, heading, table, figure, caption, page header or
//! footer, in reading order, with the class the layout region holding them gives (or, without
//! one, what their geometry says: a short block of large text is a title, a block in the page's
//! top or bottom margin a header or footer). A table region's cells, and a figure's labels, are
//! one block.

use serde::Serialize;

use super::layout::{Hint, Rect, Row};
use super::region::RegionClass;

/// One block of a page.
#[derive(Debug, Clone, Serialize)]
pub struct Block {
    pub class: RegionClass,
    /// `[x0, y0, x1, y1]` around its lines, in the stored page's pixels.
    #[serde(rename = "box")]
    pub rect: Rect,
    /// Indices into the page's `lines`, in reading order.
    pub lines: Vec<usize>,
    /// Its lines joined by newlines (a table: one row per line, cells separated by spaces).
    pub text: String,
    /// Each line's box on the upright page, for Markdown (rows, columns, text size).
    #[serde(skip)]
    pub upright: Vec<Rect>,
}

/// Page headers or footers outside every layout region take at most this share of the page's
/// height, at its top or bottom.
const MARGIN: f32 = 0.08;
/// A block of at most two lines this much taller than the page's median line is a title (unless
/// it ends like a form label).
const TITLE_SIZE: f32 = 1.2;

fn height(r: &Rect) -> f32 {
    (r[3] - r[1]).max(1.0)
}

/// Blocks from the reading order: `rows` (upright boxes, block numbers), the page's line texts
/// and stored-page boxes (one per row), the layout hints and block regions from
/// [`super::layout::order`], and the upright page height. Returns the blocks and, per line, its
/// block.
pub fn build(
    rows: &[Row],
    texts: &[String],
    stored: &[Rect],
    hints: &[Hint],
    block_regions: &[Option<usize>],
    page_height: f32,
) -> (Vec<Block>, Vec<usize>) {
    let mut groups: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let region = block_regions.get(row.block).copied().flatten();
        let whole = region.is_some_and(|r| {
            matches!(
                hints[r].class,
                RegionClass::Table | RegionClass::Figure | RegionClass::Header | RegionClass::Footer
            )
        });
        // A heading the reading order kept with its paragraph (a fifth taller than the rows
        // under it) is a block of its own.
        let heading_above = i > 0 && rows[i - 1].block == row.block && {
            let first = rows.iter().position(|r| r.block == row.block).expect("this row");
            let rest: Vec<f32> =
                rows.iter().filter(|r| r.block == row.block).skip(1).map(|r| height(&r.rect)).collect();
            first == i - 1 && rest.len() >= 2 && height(&rows[first].rect) >= 1.2 * rest[rest.len() / 2]
        };
        let same = !heading_above
            && match groups.last() {
                Some((g, members)) => {
                    let last = &rows[*members.last().expect("groups are non-empty")];
                    last.block == row.block || (*g == region && (whole || continues(&last.rect, &row.rect)))
                }
                None => false,
            };
        match same {
            true => groups.last_mut().expect("checked").1.push(i),
            false => groups.push((region, vec![i])),
        }
    }
    let line_height = {
        let mut h: Vec<f32> = rows.iter().map(|r| height(&r.rect)).collect();
        h.sort_by(f32::total_cmp);
        h.get(h.len() / 2).copied().unwrap_or(1.0)
    };
    let mut line_block = vec![0; rows.len()];
    let mut blocks = Vec::with_capacity(groups.len());
    let n = groups.len();
    for (b, (region, members)) in groups.into_iter().enumerate() {
        let upright: Vec<Rect> = members.iter().map(|&i| rows[i].rect).collect();
        let outer = upright.iter().skip(1).fold(upright[0], |r, o| union(&r, o));
        // Headers and footers are a line or two of text no larger than the body's.
        let small = members.len() <= 2 && upright.iter().all(|r| height(r) <= 1.1 * line_height);
        let class = match region.map(|r| hints[r].class) {
            Some(c) => c,
            None if small && outer[3] <= MARGIN * page_height && b + 1 < n => RegionClass::Header,
            None if small && outer[1] >= (1.0 - MARGIN) * page_height && b > 0 => RegionClass::Footer,
            None if members.len() <= 2
                && upright.iter().all(|r| height(r) >= TITLE_SIZE * line_height)
                && !texts[*members.last().expect("non-empty")].ends_with(':') =>
            {
                RegionClass::Title
            }
            None => RegionClass::Text,
        };
        for &i in &members {
            line_block[i] = b;
        }
        let rect = members.iter().skip(1).fold(stored[members[0]], |r, &i| union(&r, &stored[i]));
        let text = block_text(&members, rows, texts);
        blocks.push(Block { class, rect, lines: members, text, upright });
    }
    (blocks, line_block)
}

/// Row `b` continues the short lines above it (`a`): right under it, aligned on the left, of the
/// same size. (The reading order keeps such rows apart when they are too short to be running text,
/// like a two-line caption.)
fn continues(a: &Rect, b: &Rect) -> bool {
    let (ha, hb) = (height(a), height(b));
    let gap = b[1] - a[3];
    (-0.3 * ha..=0.5 * ha).contains(&gap) && (a[0] - b[0]).abs() <= ha && ha.max(hb) <= 1.15 * ha.min(hb)
}

fn union(a: &Rect, b: &Rect) -> Rect {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

/// Lines joined by newlines; lines on one baseline (table cells, a label and its value) by a space.
fn block_text(members: &[usize], rows: &[Row], texts: &[String]) -> String {
    let mut out = String::new();
    for (k, &i) in members.iter().enumerate() {
        if k > 0 {
            let (p, c) = (&rows[members[k - 1]].rect, &rows[i].rect);
            let overlap = p[3].min(c[3]) - p[1].max(c[1]);
            out.push(if overlap >= 0.5 * height(p).min(height(c)) && c[0] >= p[2] { ' ' } else { '\n' });
        }
        out.push_str(&texts[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(block: usize, rect: Rect) -> Row {
        Row { fragments: vec![0], block, rect }
    }

    #[test]
    fn table_cells_make_one_block_and_margins_make_headers_without_layout() {
        let rows = [
            row(0, [50.0, 10.0, 300.0, 30.0]),
            row(1, [50.0, 100.0, 120.0, 125.0]),
            row(2, [200.0, 100.0, 260.0, 125.0]),
            row(3, [50.0, 140.0, 120.0, 165.0]),
        ];
        let texts: Vec<String> = ["Head", "a", "b", "c"].map(String::from).to_vec();
        let stored: Vec<Rect> = rows.iter().map(|r| r.rect).collect();
        let table = Hint { class: RegionClass::Table, rect: [40.0, 90.0, 300.0, 170.0], score: 0.9 };
        let (blocks, of_line) = build(&rows, &texts, &stored, &[table], &[None, Some(0), Some(0), Some(0)], 1000.0);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].class, RegionClass::Table);
        assert_eq!(blocks[1].text, "a b\nc");
        assert_eq!(of_line, [0, 1, 1, 1]);
        // The same page without layout regions: the first block sits in the top margin.
        let (blocks, _) = build(&rows, &texts, &stored, &[], &[None; 4], 1000.0);
        assert_eq!(blocks[0].class, RegionClass::Header);
        assert_eq!(blocks.len(), 4);
    }
}
