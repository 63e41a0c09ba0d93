//! Text after recognition: NFKC normalisation and the plain-text rendition of a page.

use unicode_normalization::UnicodeNormalization;

use super::layout::{Rect, Row};

/// NFKC: the full-width punctuation and digits the model emits for Latin text (`，` `）` `０`)
/// become their ASCII forms; ligatures are split. Runs of spaces collapse to one.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end().to_owned()
}

/// Join the fragments of one row: a space where the gap between them is word-sized, nothing
/// where the detector split a word.
pub fn join_fragments(texts: &[&str], rects: &[Rect]) -> String {
    let mut out = String::new();
    for (i, t) in texts.iter().enumerate() {
        if t.is_empty() {
            continue;
        }
        if i > 0 && !out.is_empty() {
            let (prev, cur) = (&rects[i - 1], &rects[i]);
            let h = (cur[3] - cur[1]).max(prev[3] - prev[1]).max(1.0);
            if cur[0] - prev[2] >= 0.15 * h && !out.ends_with(' ') && !t.starts_with(' ') {
                out.push(' ');
            }
        }
        out.push_str(t);
    }
    out
}

/// A page's text: rows in reading order, one per line; rows of neighbouring blocks that sit on
/// one baseline (a table row) share a line; a blank line separates paragraphs.
pub fn page_text(rows: &[Row], texts: &[String]) -> String {
    let mut out = String::new();
    for (i, (row, text)) in rows.iter().zip(texts).enumerate() {
        if i > 0 {
            let prev = &rows[i - 1];
            let same_line = prev.block != row.block
                && row.rect[0] >= prev.rect[2]
                && prev.rect[3].min(row.rect[3]) - prev.rect[1].max(row.rect[1])
                    >= 0.5 * (row.rect[3] - row.rect[1]).min(prev.rect[3] - prev.rect[1]);
            let new_paragraph = prev.block != row.block
                && (rows.iter().filter(|r| r.block == prev.block).count() > 1
                    || rows.iter().filter(|r| r.block == row.block).count() > 1);
            out.push_str(if same_line {
                " "
            } else if new_paragraph {
                "\n\n"
            } else {
                "\n"
            });
        }
        out.push_str(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_forms_become_ascii() {
        assert_eq!(normalize("Total：１２，５０（EUR）"), "Total:12,50(EUR)");
        assert_eq!(normalize("ﬁne  print "), "fine print");
    }

    #[test]
    fn fragments_get_a_space_only_between_words() {
        let rects = [[0.0, 0.0, 50.0, 20.0], [60.0, 0.0, 90.0, 20.0], [91.0, 0.0, 120.0, 20.0]];
        assert_eq!(join_fragments(&["Hello", "wor", "ld"], &rects), "Hello world");
    }
}
