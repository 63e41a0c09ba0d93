//! OTSL tables: docling-core's `parse_otsl_table_content` (cells with spans from `<lcel>`,
//! `<ucel>`, `<xcel>`), the cell grid, and the GitHub-style Markdown table docling renders with
//! `tabulate` (`tablefmt="github"`, no number parsing, numeric columns right-aligned).

use super::scan::{py_space, py_strip};

/// A table cell; offsets are 0-based and end-exclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCell {
    pub text: String,
    pub row_span: usize,
    pub col_span: usize,
    pub start_row: usize,
    pub end_row: usize,
    pub start_col: usize,
    pub end_col: usize,
    /// `<ched>`: a column header cell.
    pub column_header: bool,
    /// `<rhed>`: a row header cell.
    pub row_header: bool,
    /// `<srow>`: a section row cell.
    pub row_section: bool,
}

/// A table's cells and size.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableData {
    pub num_rows: usize,
    pub num_cols: usize,
    pub cells: Vec<TableCell>,
}

const STRUCTURE: [&str; 9] = ["<ecel>", "<fcel>", "<lcel>", "<ucel>", "<xcel>", "<nl>", "<ched>", "<rhed>", "<srow>"];
const STARTS_CELL: [&str; 5] = ["<fcel>", "<ecel>", "<ched>", "<rhed>", "<srow>"];

/// Splits OTSL into `<…>` tokens and the mixed token/text sequence, as docling-core's
/// `otsl_extract_tokens_and_text` does (`(<[^>]+>)`, location and `<otsl>` tags dropped).
fn tokens_and_texts(s: &str) -> (Vec<&str>, Vec<&str>) {
    let mut parts: Vec<(&str, bool)> = Vec::new();
    let mut last = 0;
    let mut i = 0;
    while let Some(off) = s[i..].find('<') {
        let start = i + off;
        match s[start + 1..].find('>') {
            Some(0) => i = start + 1,
            Some(n) => {
                let end = start + 1 + n + 1;
                parts.push((&s[last..start], false));
                parts.push((&s[start..end], true));
                last = end;
                i = end;
            }
            None => break,
        }
    }
    parts.push((&s[last..], false));
    let dropped = |t: &str| t.starts_with("<loc_") || t == "<otsl>" || t == "</otsl>";
    let tokens = parts.iter().filter(|(t, tok)| *tok && !dropped(t)).map(|(t, _)| *t).collect();
    let texts = parts.iter().filter(|(t, _)| !dropped(t) && !py_strip(t).is_empty()).map(|(t, _)| *t).collect();
    (tokens, texts)
}

/// Parses the OTSL inside `chunk` (an `<otsl>` or `<chart>` element).
pub(crate) fn parse_otsl(chunk: &str) -> TableData {
    let (tokens, texts) = tokens_and_texts(chunk);
    let clean: Vec<&str> = tokens.into_iter().filter(|t| STRUCTURE.contains(t)).collect();
    let rows: Vec<Vec<&str>> = clean.split(|t| *t == "<nl>").filter(|r| !r.is_empty()).map(<[&str]>::to_vec).collect();
    let at = |r: usize, c: usize| rows.get(r).and_then(|row| row.get(c)).copied();
    let count_right = |c: usize, r: usize| (c..).take_while(|&c| matches!(at(r, c), Some("<lcel>" | "<xcel>"))).count();
    let count_down = |c: usize, r: usize| (r..).take_while(|&r| matches!(at(r, c), Some("<ucel>" | "<xcel>"))).count();

    let mut cells = Vec::new();
    let (mut r, mut c) = (0usize, 0usize);
    for (i, &text) in texts.iter().enumerate() {
        if STARTS_CELL.contains(&text) {
            let (mut row_span, mut col_span) = (1, 1);
            let mut cell_text = "";
            let mut right = 1;
            if text != "<ecel>" {
                cell_text = texts.get(i + 1).copied().unwrap_or("");
                right = 2;
            }
            let next_right = texts.get(i + right).copied().unwrap_or("");
            if matches!(next_right, "<lcel>" | "<xcel>") {
                col_span += count_right(c + 1, r);
            }
            if matches!(at(r + 1, c), Some("<ucel>" | "<xcel>")) {
                row_span += count_down(c, r + 1);
            }
            cells.push(TableCell {
                text: py_strip(cell_text).to_string(),
                row_span,
                col_span,
                start_row: r,
                end_row: r + row_span,
                start_col: c,
                end_col: c + col_span,
                column_header: text == "<ched>",
                row_header: text == "<rhed>",
                row_section: text == "<srow>",
            });
        }
        if STRUCTURE.contains(&text) && text != "<nl>" {
            c += 1;
        }
        if text == "<nl>" {
            r += 1;
            c = 0;
        }
    }
    TableData { num_rows: rows.len(), num_cols: rows.iter().map(Vec::len).max().unwrap_or(0), cells }
}

impl TableData {
    /// The `num_rows × num_cols` grid: each position holds the index of the cell covering it
    /// (later cells win, as in docling-core), or `None` for an empty position.
    pub fn grid(&self) -> Vec<Vec<Option<usize>>> {
        let mut grid = vec![vec![None; self.num_cols]; self.num_rows];
        for (k, cell) in self.cells.iter().enumerate() {
            for row in grid.iter_mut().take(cell.end_row.min(self.num_rows)).skip(cell.start_row.min(self.num_rows)) {
                for slot in row.iter_mut().take(cell.end_col.min(self.num_cols)).skip(cell.start_col.min(self.num_cols))
                {
                    *slot = Some(k);
                }
            }
        }
        grid
    }

    /// The grid's texts, empty positions as "".
    pub fn grid_texts(&self) -> Vec<Vec<&str>> {
        self.grid()
            .iter()
            .map(|row| row.iter().map(|k| k.map_or("", |k| self.cells[k].text.as_str())).collect())
            .collect()
    }

    /// The table as docling-core renders it in Markdown; "" for a table without rows.
    pub fn to_markdown(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .grid_texts()
            .iter()
            .map(|row| row.iter().map(|t| t.replace('\n', " ").replace('|', "&#124;")).collect())
            .collect();
        let Some((header, body)) = rows.split_first() else {
            return String::new();
        };
        let right: Vec<bool> = (0..header.len())
            .map(|c| !body.is_empty() && is_numeric_column(body.iter().map(|row| row[c].as_str())))
            .collect();
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..header.len())
            .map(|c| body.iter().map(|row| width(py_strip(&row[c]))).chain([width(&header[c]) + 2]).max().unwrap_or(0))
            .collect();
        let line = |cells: Vec<String>| format!("|{}|", cells.join("|"));
        let pad = |s: &str, c: usize| {
            let fill = " ".repeat(widths[c].saturating_sub(width(s)));
            if right[c] { format!(" {fill}{s} ") } else { format!(" {s}{fill} ") }
        };
        let mut out = vec![line((0..header.len()).map(|c| pad(&header[c], c)).collect())];
        out.push(line(widths.iter().map(|w| "-".repeat(w + 2)).collect()));
        for row in body {
            out.push(line((0..row.len()).map(|c| pad(py_strip(&row[c]), c)).collect()));
        }
        out.join("\n")
    }
}

/// tabulate's `_column_type(...) in (int, float)`: every non-empty value is a number and at
/// least one is not a bool literal.
fn is_numeric_column<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    // Type ranks as tabulate's `_more_generic`: none 0, bool 1, int 2, float 3, str 5.
    let rank = values
        .map(|v| {
            if v.is_empty() {
                0
            } else if v == "True" || v == "False" {
                1
            } else if py_int(v) || (thousands(v) && !v.contains('.')) {
                2
            } else if py_float(v) || thousands(v) {
                3
            } else {
                5
            }
        })
        .fold(1, u8::max);
    rank == 2 || rank == 3
}

/// Python's `int(s)` succeeds.
fn py_int(s: &str) -> bool {
    let t = s.trim_matches(py_space);
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    digits_with_underscores(t)
}

fn digits_with_underscores(t: &str) -> bool {
    !t.is_empty()
        && !t.starts_with('_')
        && !t.ends_with('_')
        && !t.contains("__")
        && t.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Python's `float(s)` succeeds with a finite value, or `s` is an inf/nan literal.
fn py_float(s: &str) -> bool {
    let t = s.trim_matches(py_space);
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    if matches!(body, "inf" | "infinity" | "nan") {
        return matches!(lower.as_str(), "inf" | "-inf" | "nan");
    }
    let plain = body.replace('_', "");
    let ok_underscores =
        body.split(['.', 'e']).all(|p| p.is_empty() || digits_with_underscores(p.trim_start_matches(['+', '-'])));
    ok_underscores
        && plain.chars().any(|c| c.is_ascii_digit())
        && plain.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
        && plain.parse::<f64>().is_ok_and(f64::is_finite)
}

/// tabulate's `_isnumber_with_thousands_separator`: `1,000`, `-12,345.6`, `.5`.
fn thousands(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    if int.is_empty() {
        return frac.is_some_and(|f| !f.is_empty());
    }
    let mut groups = int.split(',');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    (1..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_digit())
        && !rest.is_empty()
        && rest.iter().all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctags_otsl_spans() {
        let t = parse_otsl("<otsl><fcel>a<lcel><fcel>b<nl><ucel><ucel><fcel>c<nl></otsl>");
        assert_eq!((t.num_rows, t.num_cols), (2, 3));
        let a = &t.cells[0];
        assert_eq!((a.text.as_str(), a.row_span, a.col_span), ("a", 2, 2));
        assert_eq!(t.grid_texts(), vec![vec!["a", "a", "b"], vec!["a", "a", "c"]]);
    }

    #[test]
    fn doctags_numeric_columns_follow_tabulate() {
        assert!(is_numeric_column(["1", "", "2.5"].into_iter()));
        assert!(is_numeric_column(["1,000", "1e3"].into_iter()));
        assert!(!is_numeric_column(["1", "x"].into_iter()));
        assert!(!is_numeric_column(["", ""].into_iter()));
        assert!(!is_numeric_column(["True", "False"].into_iter()));
    }
}
