//! The few text scans DocTags needs, written out by hand: DocTags is `<name>` tokens in plain
//! text with no attributes, quoting or entities, so a scanner is shorter than a grammar crate and
//! lets each scan mirror the regular expression docling-core uses for the same job exactly
//! (which a general XML/HTML tokenizer would not: DocTags is neither, and text like `a<b` occurs).

/// Python's `str.strip()` whitespace (`str.isspace`), a superset of Unicode White_Space.
pub(crate) fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// The numbers of every `<loc_N>` in `s`, in order (`<loc_(\d+)>`).
pub(crate) fn locs(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("<loc_") {
        rest = &rest[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'>') {
            if let Ok(n) = rest[..digits].parse() {
                out.push(n);
            }
            rest = &rest[digits + 1..];
        }
    }
    out
}

/// The text of a chunk with its tags removed and Python-stripped: docling-core's
/// `extract_inner_text`, `re.sub(r"<(?!_.*?_>)[a-zA-Z/][^>]*>", "", s).strip()`. A `<` that is not
/// followed by a letter or `/` (as in `P < 0.05`) is text; `<_lang_>` tags are kept.
pub(crate) fn inner_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == b'<'
            && b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/')
            && let Some(j) = s[i + 1..].find('>')
        {
            i = i + 1 + j + 1;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or('\0');
        out.push(c);
        i += c.len_utf8();
    }
    py_strip(&out).to_string()
}

/// The first `<open>…</close>` span in `s` with no newline inside (Python `re.search` without
/// DOTALL), as docling-core finds captions: the content between the tags.
pub(crate) fn first_single_line_span<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = s[from..].find(open) {
        let start = from + i + open.len();
        let line_end = s[start..].find('\n').map(|n| start + n).unwrap_or(s.len());
        if let Some(j) = s[start..line_end].find(close) {
            return Some(&s[start..start + j]);
        }
        from = from + i + 1;
    }
    None
}

/// The name of the tag starting at byte `i` of `s` (`<name>` or `</name>`), if any: returns
/// (name, is_closing, byte just after `>`). Names are DocTags names: letters, digits, `_`.
pub(crate) fn tag_at(s: &str, i: usize) -> Option<(&str, bool, usize)> {
    let rest = s.get(i..)?.strip_prefix('<')?;
    let (closing, rest) = match rest.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let n = rest.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
    if n == 0 || rest.as_bytes().get(n) != Some(&b'>') {
        return None;
    }
    let after = i + 1 + usize::from(closing) + n + 1;
    Some((&rest[..n], closing, after))
}

/// Python's `re.sub(r"(?<!\\)_", r"\_", …)` outside Markdown image links (`![…](…)`): docling's
/// Markdown underscore escaping.
pub(crate) fn escape_underscores(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut last = 0;
    let mut from = 0;
    while let Some((start, end)) = next_image_link(text, from) {
        push_escaped(&mut out, &text[last..start]);
        out.push_str(&text[start..end]);
        last = end;
        from = end;
    }
    push_escaped(&mut out, &text[last..]);
    out
}

fn push_escaped(out: &mut String, s: &str) {
    let mut prev = '\0';
    for c in s.chars() {
        if c == '_' && prev != '\\' {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
}

/// `!\[.*?\]\((.*?)\)` (no DOTALL) from byte `from`: (start, end) of the match.
fn next_image_link(text: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(i) = text[at..].find("![") {
        let start = at + i;
        let line_end = text[start..].find('\n').map(|n| start + n).unwrap_or(text.len());
        let line = &text[start + 2..line_end];
        if let Some(j) = line.find("](")
            && let Some(k) = line[j + 2..].find(')')
        {
            return Some((start, start + 2 + j + 2 + k + 1));
        }
        at = start + 1;
    }
    None
}

/// Python's `html.escape(s, quote=False)`.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctags_inner_text_keeps_comparisons_and_language_tags() {
        assert_eq!(inner_text("<text><loc_1>P < 0.05 and P > 0.01</text>"), "P < 0.05 and P > 0.01");
        assert_eq!(inner_text("<code><_Python_>x</code>"), "<_Python_>x");
        assert_eq!(inner_text("  a <b>c</b>  "), "a c");
        assert_eq!(inner_text("a <loc_7"), "a <loc_7");
    }

    #[test]
    fn doctags_locs_and_escapes() {
        assert_eq!(locs("<loc_1><loc_x><loc_22>a<loc_333>"), vec![1, 22, 333]);
        assert_eq!(escape_underscores(r"a_b \_ ![x_y](u_v) c_"), r"a\_b \_ ![x_y](u_v) c\_");
        assert_eq!(escape_html("a<b&c>\"'"), "a&lt;b&amp;c&gt;\"'");
        assert_eq!(
            first_single_line_span("<caption>a\nb</caption><caption>c</caption>", "<caption>", "</caption>"),
            Some("c")
        );
    }
}
