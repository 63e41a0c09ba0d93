//! The Markdown rendition of a document read by OCR: its pages' blocks in reading order. Titles
//! become `#` (the document's largest) or `##` headings; paragraphs are re-flowed from their
//! lines, a word hyphenated at a line end joined again; lines starting with a bullet or a number
//! become list items; a table region's lines become a Markdown table (rows by baseline, columns by
//! the gaps between cells), or its lines when they do not form a grid. Page headers and footers
//! are left out (the result JSON lists them per page).

use super::blocks::Block;
use super::layout::Rect;
use super::region::RegionClass;

fn height(r: &Rect) -> f32 {
    (r[3] - r[1]).max(1.0)
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(1.0)
}

/// A page's blocks with its line texts.
pub struct PageBlocks<'a> {
    pub blocks: &'a [Block],
    pub lines: &'a [String],
}

/// The document as Markdown (empty when nothing was read).
pub fn document(pages: &[PageBlocks]) -> String {
    // Heading levels by text size over the whole document: the largest titles are `#`.
    let heading_sizes: Vec<f32> = pages
        .iter()
        .flat_map(|p| p.blocks.iter())
        .filter(|b| b.class == RegionClass::Title)
        .map(|b| median(b.upright.iter().map(height).collect()))
        .collect();
    let largest = heading_sizes.iter().copied().fold(0.0, f32::max);
    let mut parts: Vec<String> = Vec::new();
    for page in pages {
        // The box of the previous one-line text block, so a value on its label's baseline joins it.
        let mut one_line: Option<Rect> = None;
        for b in page.blocks {
            let single = (b.class == RegionClass::Text && b.lines.len() == 1).then(|| b.upright[0]);
            if let (Some(prev), Some(cur), Some(last)) = (one_line, single, parts.last_mut())
                && same_baseline(&prev, &cur)
                && cur[0] >= prev[2]
            {
                last.push(' ');
                last.push_str(&escape(&page.lines[b.lines[0]]));
                one_line = single;
                continue;
            }
            one_line = single;
            let texts: Vec<&str> = b.lines.iter().map(|&i| page.lines[i].as_str()).collect();
            let part = match b.class {
                RegionClass::Header | RegionClass::Footer => continue,
                RegionClass::Title => {
                    let size = median(b.upright.iter().map(height).collect());
                    let marks = if size >= 0.9 * largest { "#" } else { "##" };
                    format!("{marks} {}", reflow(&texts))
                }
                RegionClass::Table => table(&texts, &b.upright).unwrap_or_else(|| lines_of(&texts, &b.upright)),
                _ => match list(&texts) {
                    Some(items) => items,
                    None if b.lines.len() > 1 && !on_one_baseline(&b.upright) => reflow(&texts),
                    None => lines_of(&texts, &b.upright),
                },
            };
            if !part.trim().is_empty() {
                parts.push(part);
            }
        }
    }
    parts.join("\n\n")
}

fn same_baseline(a: &Rect, b: &Rect) -> bool {
    a[3].min(b[3]) - a[1].max(b[1]) >= 0.5 * height(a).min(height(b))
}

fn on_one_baseline(rects: &[Rect]) -> bool {
    rects.windows(2).all(|w| same_baseline(&w[0], &w[1]))
}

/// Lines as they stand: lines on one baseline joined by a space, others by a hard line break.
fn lines_of(texts: &[&str], rects: &[Rect]) -> String {
    let mut out = String::new();
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            out.push_str(if same_baseline(&rects[i - 1], &rects[i]) { " " } else { "  \n" });
        }
        out.push_str(&escape(t));
    }
    out
}

/// Characters that would start Markdown syntax at the beginning of a line are escaped.
fn escape(t: &str) -> String {
    let t = t.trim();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some('#' | '>' | '|'), _) | (Some('+' | '-' | '*'), Some(' ')) => format!("\\{t}"),
        _ => t.to_owned(),
    }
}

/// Lines re-flowed into one paragraph: a word hyphenated at a line end (`house-` + `holds`) is
/// joined again, a compound broken at its hyphen (`North-` + `West`) keeps it; other lines are
/// joined by a space.
pub fn reflow(texts: &[&str]) -> String {
    let mut out = String::new();
    for t in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if out.is_empty() {
            out.push_str(t);
            continue;
        }
        let broken = out.ends_with('-') && out[..out.len() - 1].chars().next_back().is_some_and(char::is_alphanumeric);
        if broken && t.chars().next().is_some_and(char::is_lowercase) {
            out.pop();
        } else if !broken {
            out.push(' ');
        }
        out.push_str(t);
    }
    escape(&out)
}

/// The list marker a line starts with: a bullet, or a number or letter with `.` or `)`; returns
/// (ordered, the text after the marker).
fn marker(line: &str) -> Option<(bool, &str)> {
    let line = line.trim_start();
    for bullet in ['•', '·', '▪', '◦', '-', '*', '–', '—'] {
        if let Some(rest) = line.strip_prefix(bullet)
            && rest.starts_with(' ')
            && !rest.trim().is_empty()
        {
            return Some((false, rest.trim_start()));
        }
    }
    let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
    if (1..=2).contains(&digits) {
        let rest = &line[digits..];
        if let Some(after) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))
            && after.starts_with(' ')
            && after.trim_start().chars().next().is_some_and(|c| !c.is_ascii_digit())
        {
            return Some((true, after.trim_start()));
        }
    }
    None
}

/// A block whose first line starts with a list marker, as list items; lines without a marker
/// continue the item above. Numbered lists need two items (`1. March` alone is not a list).
fn list(texts: &[&str]) -> Option<String> {
    let (ordered, _) = marker(texts.first()?)?;
    let mut items: Vec<(String, Vec<&str>)> = Vec::new();
    for t in texts {
        match marker(t) {
            Some((o, rest)) if o == ordered => {
                let mark =
                    if ordered { t.trim_start().split(' ').next().unwrap_or("1.").to_owned() } else { "-".into() };
                items.push((mark, vec![rest]));
            }
            _ => items.last_mut().expect("the first line has a marker").1.push(t),
        }
    }
    if ordered && items.len() < 2 {
        return None;
    }
    Some(items.iter().map(|(m, lines)| format!("{m} {}", reflow(lines))).collect::<Vec<_>>().join("\n"))
}

/// A table from its cells' geometry: rows where cells share a baseline, columns where a vertical
/// gap runs through every row. `None` when that gives fewer than two rows or columns, or puts two
/// cells of a row into one column.
pub fn table(texts: &[&str], rects: &[Rect]) -> Option<String> {
    if texts.len() < 4 {
        return None;
    }
    // Rows: cells by top, a new row when a cell does not share the current row's baseline.
    let mut order: Vec<usize> = (0..rects.len()).collect();
    order.sort_by(|&a, &b| (rects[a][1] + rects[a][3]).total_cmp(&(rects[b][1] + rects[b][3])));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match rows.last_mut() {
            Some(r) if r.iter().any(|&j| same_baseline(&rects[i], &rects[j])) => r.push(i),
            _ => rows.push(vec![i]),
        }
    }
    // Columns: the cells' x-extents merged where they overlap.
    let mut spans: Vec<(f32, f32)> = rects.iter().map(|r| (r[0], r[2])).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut columns: Vec<(f32, f32)> = Vec::new();
    for (x0, x1) in spans {
        match columns.last_mut() {
            Some(c) if x0 <= c.1 => c.1 = c.1.max(x1),
            _ => columns.push((x0, x1)),
        }
    }
    if rows.len() < 2 || columns.len() < 2 {
        return None;
    }
    let mut grid = vec![vec![String::new(); columns.len()]; rows.len()];
    for (r, cells) in rows.iter().enumerate() {
        for &i in cells {
            let c = columns.iter().position(|&(x0, x1)| rects[i][0] >= x0 && rects[i][0] <= x1)?;
            if !grid[r][c].is_empty() {
                return None;
            }
            grid[r][c] = texts[i].trim().replace('|', "\\|");
        }
    }
    let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
    let mut out = vec![line(&grid[0]), format!("|{}", "---|".repeat(columns.len()))];
    out.extend(grid[1..].iter().map(|r| line(r)));
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_reflow_and_hyphenated_words_join() {
        assert_eq!(
            reflow(&["The survey asked 350 house-", "holds about their", "gardens."]),
            "The survey asked 350 households about their gardens."
        );
        // Before a capital or a digit the hyphen stays; a dash between words is no hyphenation.
        assert_eq!(
            reflow(&["North-", "West and 2024-", "25 figures -", "next"]),
            "North-West and 2024-25 figures - next"
        );
    }

    #[test]
    fn lists_from_bullets_and_numbers() {
        let got = list(&["1. New school in the", "west district.", "2. Road repairs."]).unwrap();
        assert_eq!(got, "1. New school in the west district.\n2. Road repairs.");
        assert_eq!(list(&["• tea", "• milk"]).unwrap(), "- tea\n- milk");
        assert_eq!(list(&["1. March is", "a month"]), None, "a lone number is not a list");
        assert_eq!(list(&["10.5 kg of flour"]), None);
    }

    #[test]
    fn tables_grid_by_baselines_and_gaps_or_fall_back() {
        let cells = ["Part", "Price", "A-1", "9.45", "B-2", "36.00"];
        let rects = [
            [10.0, 0.0, 60.0, 20.0],
            [200.0, 0.0, 260.0, 20.0],
            [10.0, 30.0, 50.0, 50.0],
            [200.0, 31.0, 250.0, 51.0],
            [10.0, 60.0, 50.0, 80.0],
            [205.0, 60.0, 260.0, 80.0],
        ];
        assert_eq!(table(&cells, &rects).unwrap(), "| Part | Price |\n|---|---|\n| A-1 | 9.45 |\n| B-2 | 36.00 |");
        // A cell spanning both columns leaves one column: not a grid.
        let mut wide = rects;
        wide[4] = [10.0, 60.0, 250.0, 80.0];
        assert_eq!(table(&cells, &wide), None);
    }
}
