//! Kubernetes label selectors as the HPA sends them in `?labelSelector=` (the string form of a
//! `metav1.LabelSelector`): `queue=a`, `queue==a`, `queue!=a`, `queue in (a,b)`, `queue notin (a)`,
//! `queue`, `!queue`, joined by commas.

use std::collections::BTreeMap;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parse the string form.
    pub fn parse(text: &str) -> Result<Self> {
        let mut reqs = Vec::new();
        for term in split_terms(text)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_term(term)?);
        }
        Ok(Self(reqs))
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// The values a key is pinned to by `=`/`==`/`in`, if the selector pins it.
    pub fn pinned_values(&self, key: &str) -> Option<Vec<&str>> {
        self.0.iter().find_map(|r| match r {
            Requirement::In(k, vs) if k == key => Some(vs.iter().map(String::as_str).collect()),
            _ => None,
        })
    }
}

/// Split on commas that are not inside `( … )`.
fn split_terms(text: &str) -> Result<Vec<&str>> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or_else(|| bad(text, "unbalanced `)`"))?,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad(text, "unbalanced `(`"));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn parse_term(term: &str) -> Result<Requirement> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key.trim(), term)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotIn(key_of(k.trim(), term)?, vec![value_of(v.trim(), term)?]));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::In(key_of(k.trim(), term)?, vec![value_of(v.trim(), term)?]));
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = key_of(words.next().unwrap_or_default(), term)?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement::Exists(key));
    };
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(bad(term, "expected `=`, `==`, `!=`, `in` or `notin`"));
    };
    let set =
        set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| bad(term, "expected `(…)`"))?;
    let values = set.split(',').map(|v| value_of(v.trim(), term)).collect::<Result<Vec<_>>>()?;
    Ok(if negated { Requirement::NotIn(key, values) } else { Requirement::In(key, values) })
}

fn key_of(key: &str, term: &str) -> Result<String> {
    let ok = !key.is_empty()
        && key.len() <= 316
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok { Ok(key.to_owned()) } else { Err(bad(term, "invalid label key")) }
}

fn value_of(value: &str, term: &str) -> Result<String> {
    let ok = value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(value.to_owned()) } else { Err(bad(term, "invalid label value")) }
}

fn bad(text: &str, why: &str) -> Error {
    Error::BadRequest(format!("label selector `{text}`: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(queue: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("queue".to_owned(), queue.to_owned())])
    }

    #[test]
    fn equality_forms() {
        for text in ["queue=jobs", "queue==jobs", " queue = jobs "] {
            let s = Selector::parse(text).unwrap();
            assert!(s.matches(&labels("jobs")), "{text}");
            assert!(!s.matches(&labels("jobs-dlq")), "{text}");
            assert_eq!(s.pinned_values("queue"), Some(vec!["jobs"]));
        }
        let s = Selector::parse("queue!=jobs").unwrap();
        assert!(!s.matches(&labels("jobs")) && s.matches(&labels("other")));
        assert_eq!(s.pinned_values("queue"), None);
    }

    #[test]
    fn set_forms_and_existence() {
        let s = Selector::parse("queue in (a, b),queue notin (b)").unwrap();
        assert!(s.matches(&labels("a")));
        assert!(!s.matches(&labels("b")));
        assert!(!s.matches(&labels("c")));
        assert!(Selector::parse("queue").unwrap().matches(&labels("x")));
        assert!(!Selector::parse("!queue").unwrap().matches(&labels("x")));
        assert!(!Selector::parse("env=prod").unwrap().matches(&labels("x")), "a label the series lacks");
        assert!(Selector::parse("").unwrap().matches(&labels("x")), "empty selects everything");
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for text in ["queue in (a", "queue in a)", "queue=(x)", "=x", "queue maybe (a)", "queue=a b"] {
            let err = Selector::parse(text).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{text}: {err}");
        }
    }
}
