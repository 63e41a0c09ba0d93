//! Digits against letters: where the context says which one a character must be, and the
//! recogniser itself weighed that one (it is among the character's candidates from the CTC time
//! steps it was read at), the character becomes it. Nothing is replaced from a fixed table: a
//! character the recogniser never considered as the other kind stays as read.
//!
//! The contexts: a letter between two digits is a digit (`2O24`); a digit between two letters is
//! a letter (`c0m`); a lone `I`/`l` before a month name or a unit is the number one (`I March`,
//! `l kg`); a lone `1`/`I` after a number and before the end of a phrase is the litre sign
//! (`4 1.`).

use unicode_normalization::UnicodeNormalization;

use super::rec::Glyph;

/// Least probability a candidate of the other kind needs to be taken, for a character between
/// two of that kind, and for one word standing in a unit or month context.
const MIN_BETWEEN: f32 = 0.05;
const MIN_WORD: f32 = 0.002;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const UNITS: [&str; 19] =
    ["kg", "g", "mg", "t", "km", "m", "cm", "mm", "l", "ml", "cl", "dl", "h", "min", "s", "ms", "am", "pm", "kWh"];

/// One character as read, and its candidates normalised like the text (NFKC: `１` is `1`).
struct Char {
    c: char,
    candidates: Vec<(char, f32)>,
}

fn single_char(s: &str) -> Option<char> {
    let mut it = s.nfkc();
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// The best candidate of `c` that `want` accepts, at probability `min` or more.
fn best(c: &Char, min: f32, want: impl Fn(char) -> bool) -> Option<char> {
    c.candidates.iter().find(|(k, p)| *p >= min && want(*k)).map(|k| k.0)
}

fn is_month(word: &str) -> bool {
    MONTHS.iter().any(|m| word == *m || (word.len() == 3 && m.starts_with(word)))
}

fn is_unit(word: &str) -> bool {
    UNITS.contains(&word)
}

fn one_like(c: char) -> bool {
    matches!(c, '1' | 'I' | 'l' | '|')
}

/// The repaired text of a line, or `None` when nothing changes.
pub fn repair(glyphs: &[Glyph]) -> Option<String> {
    let mut chars: Vec<Char> = Vec::new();
    for g in glyphs {
        let candidates: Vec<(char, f32)> =
            g.candidates.iter().filter_map(|(t, p)| single_char(t).map(|c| (c, *p))).collect();
        for c in g.text.nfkc() {
            chars.push(Char { c, candidates: candidates.clone() });
        }
    }
    let original: String = chars.iter().map(|c| c.c).collect();
    let n = chars.len();
    let kind = |chars: &[Char], i: usize, digit: bool| {
        chars.get(i).is_some_and(|c| if digit { c.c.is_ascii_digit() } else { c.c.is_ascii_alphabetic() })
    };
    // Between two of the other kind.
    for i in 1..n.saturating_sub(1) {
        let c = chars[i].c;
        if c.is_ascii_alphabetic() && kind(&chars, i - 1, true) && kind(&chars, i + 1, true) {
            if let Some(d) = best(&chars[i], MIN_BETWEEN, |k| k.is_ascii_digit()) {
                chars[i].c = d;
            }
        } else if c.is_ascii_digit()
            && kind(&chars, i - 1, false)
            && kind(&chars, i + 1, false)
            && let Some(l) = best(&chars[i], MIN_BETWEEN, |k| k.is_ascii_alphabetic())
        {
            chars[i].c = l;
        }
    }
    // Words: (start, end) of each run of non-spaces.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().map(|c| c.c).chain([' ']).enumerate() {
        match (c == ' ', start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    let text_of = |chars: &[Char], (s, e): (usize, usize)| -> String { chars[s..e].iter().map(|c| c.c).collect() };
    let bare = |w: String| w.trim_end_matches(|c: char| ",.;:!?)".contains(c)).to_owned();
    for k in 0..words.len() {
        let (s, mut e) = words[k];
        while e > s + 1 && ",.;:!?)".contains(chars[e - 1].c) {
            e -= 1;
        }
        if e - s != 1 || !one_like(chars[s].c) {
            continue;
        }
        let next = words.get(k + 1).map(|&w| bare(text_of(&chars, w)));
        let before_number = k > 0 && {
            let prev = bare(text_of(&chars, words[k - 1]));
            !prev.is_empty() && prev.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        };
        if next.as_deref().is_some_and(|w| is_month(w) || is_unit(w)) {
            if chars[s].c != '1'
                && let Some(d) = best(&chars[s], MIN_WORD, |k| k == '1')
            {
                chars[s].c = d;
            }
        } else if before_number
            && chars[s].c != 'l'
            && next.as_deref().is_none_or(|w| w.chars().next().is_none_or(|c| c.is_lowercase()))
            && let Some(l) = best(&chars[s], MIN_WORD, |k| k == 'l')
        {
            chars[s].c = l;
        }
    }
    let repaired: String = chars.iter().map(|c| c.c).collect();
    (repaired != original).then_some(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Glyphs from (text, [(candidate, p)]); the read text is each one's first candidate.
    fn glyphs(spec: &[(&str, &[(&str, f32)])]) -> Vec<Glyph> {
        spec.iter()
            .map(|(t, c)| Glyph { text: (*t).into(), candidates: c.iter().map(|(k, p)| ((*k).into(), *p)).collect() })
            .collect()
    }

    fn plain(text: &str) -> Vec<(String, Vec<(String, f32)>)> {
        text.chars().map(|c| (c.to_string(), vec![(c.to_string(), 0.99)])).collect()
    }

    fn line(text: &str, alt: &[(usize, &[(&str, f32)])]) -> Vec<Glyph> {
        let mut g: Vec<Glyph> = plain(text).into_iter().map(|(text, candidates)| Glyph { text, candidates }).collect();
        for (i, extra) in alt {
            g[*i].candidates.extend(extra.iter().map(|(k, p)| ((*k).into(), *p)));
        }
        g
    }

    #[test]
    fn letters_between_digits_become_the_digit_the_model_weighed() {
        // 2O24, the model gave `0` 20 % at the `O`.
        assert_eq!(repair(&line("2O24", &[(1, &[("0", 0.2)])])).as_deref(), Some("2024"));
        // Without a digit among its candidates the letter stays: no blind substitution.
        assert_eq!(repair(&line("2O24", &[(1, &[("Q", 0.2)])])), None);
        assert_eq!(repair(&line("c0m", &[(1, &[("o", 0.3)])])).as_deref(), Some("com"));
        // `A4` is not between letters on both sides.
        assert_eq!(repair(&line("A4 paper", &[(1, &[("a", 0.3)])])), None);
    }

    #[test]
    fn one_before_a_month_or_unit_and_litre_after_a_number() {
        assert_eq!(repair(&line("I March", &[(0, &[("1", 0.01)])])).as_deref(), Some("1 March"));
        assert_eq!(repair(&line("l kg.", &[(0, &[("1", 0.3)])])).as_deref(), Some("1 kg."));
        assert_eq!(repair(&line("4 1.", &[(2, &[("l", 0.05)])])).as_deref(), Some("4 l."));
        assert_eq!(repair(&line("1 I oil", &[(2, &[("l", 0.4)])])).as_deref(), Some("1 l oil"));
        // A name, not a unit context: `I` stays; `Pallet 1 of 3` has no number before the `1`.
        assert_eq!(repair(&line("I went", &[(0, &[("1", 0.3)])])), None);
        assert_eq!(repair(&line("Pallet 1 of 3", &[(7, &[("l", 0.3)])])), None);
        // Full-width candidates count as their ASCII forms.
        assert_eq!(
            repair(&glyphs(&[("l", &[("l", 0.6), ("１", 0.3)]), (" ", &[]), ("m", &[("m", 0.9)])])).as_deref(),
            Some("1 m")
        );
    }
}
