//! Reading the workers' `/metrics` (Prometheus text format 0.0.4 and OpenMetrics text, the
//! subset docfleet-worker writes): sample lines `name{label="value",...} value [timestamp]`.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Every sample in an exposition; comment lines, blank lines and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after_brace)?;
        labels = parsed;
        rest = tail;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// Labels up to the closing brace; returns them and the text after the brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// What the scaler needs from one worker's exposition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerState {
    /// `docfleet_worker_busy` > 0.
    pub busy: bool,
    /// `docfleet_jobs_in_flight`.
    pub in_flight: f64,
    /// Jobs this worker has finished: `docfleet_jobs_total` over every pipeline and every outcome
    /// except `retried` (a released job is not finished; it comes back).
    pub jobs_finished: f64,
}

/// Read a worker's state; `None` when the exposition lacks `docfleet_worker_busy` (not a docfleet worker).
pub fn worker_state(text: &str) -> Option<WorkerState> {
    let mut state = WorkerState::default();
    let mut seen_busy = false;
    for s in parse(text) {
        match s.name.as_str() {
            "docfleet_worker_busy" => {
                seen_busy = true;
                state.busy = s.value > 0.0;
            }
            "docfleet_jobs_in_flight" => state.in_flight = s.value,
            "docfleet_jobs_total" if s.label("outcome") != Some("retried") && s.value.is_finite() => {
                state.jobs_finished += s.value;
            }
            _ => {}
        }
    }
    seen_busy.then_some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What docfleet-worker's prometheus-client registry writes (OpenMetrics text).
    const WORKER: &str = r#"# HELP docfleet_jobs Jobs finished, by pipeline and outcome.
# TYPE docfleet_jobs counter
docfleet_jobs_total{pipeline="inspect",outcome="success"} 7
docfleet_jobs_total{pipeline="sleep",outcome="success"} 3
docfleet_jobs_total{pipeline="inspect",outcome="failed"} 2
docfleet_jobs_total{pipeline="inspect",outcome="retried"} 5
docfleet_jobs_total{pipeline="ocr",outcome="dead_lettered"} 1
# HELP docfleet_jobs_in_flight Jobs running now.
# TYPE docfleet_jobs_in_flight gauge
docfleet_jobs_in_flight 2
# HELP docfleet_worker_busy 1 while at least one job runs, else 0.
# TYPE docfleet_worker_busy gauge
docfleet_worker_busy 1
docfleet_job_duration_seconds_bucket{le="+Inf",pipeline="inspect"} 9
# EOF
"#;

    #[test]
    fn reads_busy_in_flight_and_finished_jobs() {
        let s = worker_state(WORKER).unwrap();
        assert!(s.busy);
        assert_eq!(s.in_flight, 2.0);
        assert_eq!(s.jobs_finished, 13.0, "success + failed + dead_lettered, not retried");
        let idle = worker_state("docfleet_worker_busy 0\ndocfleet_jobs_in_flight 0\n").unwrap();
        assert!(!idle.busy);
        assert_eq!(idle.jobs_finished, 0.0);
    }

    #[test]
    fn an_exposition_without_the_busy_gauge_is_not_a_worker() {
        assert_eq!(worker_state("up 1\n# EOF\n"), None);
        assert_eq!(worker_state(""), None);
    }

    #[test]
    fn labels_values_and_escapes() {
        let samples = parse(
            "a_total{x=\"1\",y=\"say \\\"hi\\\"\\n\"} 3.5 1700000000\nb +Inf\nc{le=\"+Inf\"} NaN\nbroken{x=\"1\" 2\n no_value\n",
        );
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "a_total");
        assert_eq!(samples[0].label("y"), Some("say \"hi\"\n"));
        assert_eq!(samples[0].value, 3.5);
        assert_eq!(samples[1].value, f64::INFINITY);
        assert!(samples[2].value.is_nan());
        assert_eq!(samples[2].label("le"), Some("+Inf"));
    }
}
