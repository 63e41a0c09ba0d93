//! Progress: bars on a terminal (total bytes, plus one bar per large file in flight), periodic
//! structured log lines otherwise, nothing when asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars on stderr.
    Bars,
    /// A log line every interval.
    Log(Duration),
    /// Nothing (the summary is still printed).
    Quiet,
}

impl Mode {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn auto(interval: Duration) -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) { Mode::Bars } else { Mode::Log(interval) }
    }
}

#[derive(Debug, Default)]
struct Counters {
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    files_total: AtomicU64,
}

/// Progress of one model's download.
pub struct Progress {
    label: String,
    counters: Arc<Counters>,
    multi: Option<MultiProgress>,
    total_bar: Option<ProgressBar>,
    logger: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

/// Files smaller than this get no bar of their own (a snapshot of 200 small files would flicker).
const FILE_BAR_MIN: u64 = 8 << 20;

impl Progress {
    /// Start tracking `label` (the model name); the log ticker runs until [`Progress::finish`].
    pub fn new(mode: Mode, label: &str) -> Self {
        let counters = Arc::new(Counters::default());
        let (multi, total_bar, logger) = match mode {
            Mode::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(label.to_owned());
                (Some(multi), Some(bar), None)
            }
            Mode::Log(every) => {
                let c = counters.clone();
                let label = label.to_owned();
                let handle = tokio::spawn(async move {
                    let started = Instant::now();
                    let mut last = u64::MAX;
                    loop {
                        tokio::time::sleep(every).await;
                        let done = c.bytes_done.load(Ordering::Relaxed);
                        if done == last {
                            continue;
                        }
                        last = done;
                        let secs = started.elapsed().as_secs_f64().max(1e-3);
                        tracing::info!(
                            model = %label,
                            files_done = c.files_done.load(Ordering::Relaxed),
                            files_total = c.files_total.load(Ordering::Relaxed),
                            bytes_done = done,
                            bytes_total = c.bytes_total.load(Ordering::Relaxed),
                            mb_per_s = format!("{:.1}", done as f64 / secs / 1e6),
                            "download progress"
                        );
                    }
                });
                (None, None, Some(handle))
            }
            Mode::Quiet => (None, None, None),
        };
        Self { label: label.to_owned(), counters, multi, total_bar, logger, started: Instant::now() }
    }

    /// Add files and bytes still to fetch to the totals.
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.counters.files_total.fetch_add(files, Ordering::Relaxed);
        let total = self.counters.bytes_total.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.total_bar {
            bar.set_length(total);
        }
    }

    /// Progress of one file of `size` bytes.
    pub fn file(&self, name: &str, size: u64) -> FileProgress {
        let bar = match (&self.multi, size >= FILE_BAR_MIN) {
            (Some(multi), true) => {
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix("");
                bar.set_message(name.to_owned());
                Some(bar)
            }
            _ => None,
        };
        FileProgress { bar, total: self.total_bar.clone(), counters: Some(self.counters.clone()) }
    }

    /// Bytes counted so far.
    pub fn bytes_done(&self) -> u64 {
        self.counters.bytes_done.load(Ordering::Relaxed)
    }

    /// Stop the bars and the log ticker.
    pub fn finish(mut self) {
        if let Some(h) = self.logger.take() {
            h.abort();
        }
        if let Some(bar) = self.total_bar.take() {
            bar.finish_and_clear();
        }
        tracing::debug!(model = %self.label, secs = self.started.elapsed().as_secs_f64(), "progress finished");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(h) = self.logger.take() {
            h.abort();
        }
        if let Some(bar) = self.total_bar.take() {
            bar.abandon();
        }
    }
}

/// Progress of one file; cheap to clone.
#[derive(Clone, Default)]
pub struct FileProgress {
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
    counters: Option<Arc<Counters>>,
}

impl FileProgress {
    /// A tracker that shows nothing (tests, internal copies).
    pub fn hidden() -> Self {
        Self::default()
    }

    pub fn inc(&self, n: u64) {
        if let Some(c) = &self.counters {
            c.bytes_done.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(b) = &self.total {
            b.inc(n);
        }
    }

    /// Take back `n` bytes (a download that starts over).
    pub fn rewind(&self, n: u64) {
        if let Some(c) = &self.counters {
            c.bytes_done.fetch_sub(n.min(c.bytes_done.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.set_position(b.position().saturating_sub(n));
        }
        if let Some(b) = &self.total {
            b.set_position(b.position().saturating_sub(n));
        }
    }

    /// The file turned out to be `total` bytes (its source listed no size): count them in.
    pub fn grow(&self, total: u64) {
        if let Some(c) = &self.counters {
            c.bytes_total.fetch_add(total, Ordering::Relaxed);
        }
        if let Some(b) = &self.total {
            b.inc_length(total);
        }
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// The file is done.
    pub fn done(&self) {
        if let Some(c) = &self.counters {
            c.files_done.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
