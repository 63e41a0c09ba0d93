//! Cross-job dynamic batching for one model: every call from every job in flight goes into one
//! queue, and one thread per session takes the oldest request, merges the compatible requests
//! already waiting (up to a maximum number of items, optionally waiting a little for more, like
//! TEI's batching queue), runs them as one `session.run`, and hands each caller its rows back.
//!
//! Compatible means the same input shape apart from the batch dimension; with
//! [`BatchPolicy::pad_last`] (recognition crops) the last dimension may differ by up to
//! [`BatchPolicy::max_pad_ratio`] and narrower inputs are padded with zeros to the widest, as
//! PP-OCR pads within its own batches. A merged run that fails is retried request by request, so
//! one job's bad page fails that job only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};

/// How one model's calls may be merged.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most items (rows of the batch dimension) in one run; 1 turns merging off.
    pub max_items: usize,
    /// How long a session thread waits for more requests once it has one and room is left.
    /// Zero: merge only what is already waiting (no latency added).
    pub max_wait: Duration,
    /// The last dimension may differ between merged requests (padded with zeros).
    pub pad_last: bool,
    /// Widest / narrowest last dimension allowed in one merged run when `pad_last`.
    pub max_pad_ratio: f32,
}

impl BatchPolicy {
    /// No merging: every call runs on its own (still queued for the next free session).
    pub const SINGLE: BatchPolicy =
        BatchPolicy { max_items: 1, max_wait: Duration::ZERO, pad_last: false, max_pad_ratio: 1.0 };
}

/// A tensor as (shape, values).
pub type Tensor = (Vec<usize>, Vec<f32>);

/// What a caller gets back: its rows of the output, and its share of the run's time.
pub struct Reply {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub took: Duration,
}

/// Counters of one model's runs, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// `session.run` calls.
    pub runs: AtomicU64,
    /// Requests served.
    pub requests: AtomicU64,
    /// Runs that merged more than one request.
    pub merged_runs: AtomicU64,
    /// Items (batch rows) run.
    pub items: AtomicU64,
}

impl BatchStats {
    /// (runs, requests, merged runs, items).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.runs.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.merged_runs.load(Ordering::Relaxed),
            self.items.load(Ordering::Relaxed),
        )
    }
}

struct Request {
    /// Never merged with others.
    alone: bool,
    shape: Vec<usize>,
    data: Vec<f32>,
    reply: std::sync::mpsc::SyncSender<Result<Reply>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Request>,
    closed: bool,
}

/// A submitted call; [`Pending::wait`] blocks until its rows are back.
pub struct Pending(std::sync::mpsc::Receiver<Result<Reply>>);

impl Pending {
    pub fn wait(self) -> Result<Reply> {
        self.0.recv().unwrap_or_else(|_| Err(Error::Model("the model's session thread stopped".into())))
    }
}

/// Runs one tensor (shape, data) on a session; returns the first output (shape, values).
pub type RunFn = dyn Fn(usize, &[usize], &[f32]) -> Result<(Vec<usize>, Vec<f32>)> + Send + Sync;

/// The queue and the session threads of one model.
pub struct Batcher {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    /// Copies of submitted inputs, while recording (benchmarks replay them: the model alone).
    recorded: Mutex<Option<Vec<Tensor>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub stats: Arc<BatchStats>,
}

impl Batcher {
    /// One thread per session (`sessions`), each calling `run(session, shape, data)`.
    pub fn start(name: &str, sessions: usize, policy: BatchPolicy, run: Arc<RunFn>) -> Self {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let stats = Arc::new(BatchStats::default());
        let threads = (0..sessions.max(1))
            .map(|session| {
                let (shared, stats, run) = (shared.clone(), stats.clone(), run.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{session}"))
                    .spawn(move || serve(session, &shared, policy, &*run, &stats))
                    .expect("spawn a session thread")
            })
            .collect();
        Self { shared, recorded: Mutex::new(None), threads, stats }
    }

    /// Start (or stop, returning them) keeping a copy of every submitted input.
    pub fn record(&self, on: bool) -> Vec<Tensor> {
        let mut r = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let taken = r.take().unwrap_or_default();
        if on {
            *r = Some(Vec::new());
        }
        taken
    }

    /// Queue a call; the input is copied.
    pub fn submit(&self, shape: &[usize], data: &[f32]) -> Pending {
        self.enqueue(shape, data, false)
    }

    /// Queue a call that runs on its own, never merged (benchmarks: the model as called).
    pub fn submit_alone(&self, shape: &[usize], data: &[f32]) -> Pending {
        self.enqueue(shape, data, true)
    }

    fn enqueue(&self, shape: &[usize], data: &[f32], alone: bool) -> Pending {
        if let Some(r) = self.recorded.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            r.push((shape.to_vec(), data.to_vec()));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (lock, cond) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).waiting.push_back(Request {
            alone,
            shape: shape.to_vec(),
            data: data.to_vec(),
            reply: tx,
        });
        cond.notify_one();
        Pending(rx)
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        let (lock, cond) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cond.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether `b` can join a run whose first request is `a` (widths so far `lo..=hi`).
fn compatible(policy: &BatchPolicy, a: &[usize], b: &[usize], lo: usize, hi: usize) -> bool {
    let n = a.len();
    if n != b.len() || n < 2 {
        return false;
    }
    if policy.pad_last {
        let (lo, hi) = (lo.min(b[n - 1]), hi.max(b[n - 1]));
        a[1..n - 1] == b[1..n - 1] && (hi as f32) <= policy.max_pad_ratio * lo.max(1) as f32
    } else {
        a[1..] == b[1..]
    }
}

fn serve(session: usize, shared: &(Mutex<Queue>, Condvar), policy: BatchPolicy, run: &RunFn, stats: &BatchStats) {
    let (lock, cond) = shared;
    loop {
        let mut queue = lock.lock().unwrap_or_else(|p| p.into_inner());
        let first = loop {
            if let Some(r) = queue.waiting.pop_front() {
                break r;
            }
            if queue.closed {
                return;
            }
            queue = cond.wait(queue).unwrap_or_else(|p| p.into_inner());
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + policy.max_wait;
        loop {
            take_compatible(&policy, &mut queue.waiting, &mut batch);
            let items: usize = batch.iter().map(|r| r.shape.first().copied().unwrap_or(1)).sum();
            let now = Instant::now();
            if items >= policy.max_items || now >= deadline || queue.closed {
                break;
            }
            queue = cond.wait_timeout(queue, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        // Others may be waiting for a free session too.
        if !queue.waiting.is_empty() {
            cond.notify_one();
        }
        drop(queue);
        execute(session, batch, run, stats);
    }
}

/// Move the waiting requests that fit into `batch`, oldest first.
fn take_compatible(policy: &BatchPolicy, waiting: &mut VecDeque<Request>, batch: &mut Vec<Request>) {
    if policy.max_items <= 1 || batch[0].alone {
        return;
    }
    let first = batch[0].shape.clone();
    let last = first.len().saturating_sub(1);
    let mut items: usize = batch.iter().map(|r| r.shape[0]).sum();
    let (mut lo, mut hi) =
        batch.iter().fold((usize::MAX, 0), |(lo, hi), r| (lo.min(r.shape[last]), hi.max(r.shape[last])));
    let mut i = 0;
    while i < waiting.len() && items < policy.max_items {
        let s = &waiting[i].shape;
        if !waiting[i].alone && compatible(policy, &first, s, lo, hi) && items + s[0] <= policy.max_items {
            let r = waiting.remove(i).expect("index in range");
            items += r.shape[0];
            lo = lo.min(r.shape[last]);
            hi = hi.max(r.shape[last]);
            batch.push(r);
        } else {
            i += 1;
        }
    }
}

fn execute(session: usize, batch: Vec<Request>, run: &RunFn, stats: &BatchStats) {
    stats.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
    if batch.len() == 1 {
        let r = batch.into_iter().next().expect("one request");
        stats.items.fetch_add(r.shape[0] as u64, Ordering::Relaxed);
        run_alone(session, r, run, stats);
        return;
    }
    let (input_shape, input) = merge(&batch);
    let total = input_shape[0];
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats.merged_runs.fetch_add(1, Ordering::Relaxed);
    stats.items.fetch_add(total as u64, Ordering::Relaxed);
    let started = Instant::now();
    match run(session, &input_shape, &input) {
        Ok((shape, values)) if shape.first() == Some(&total) && values.len() % total == 0 => {
            let took = started.elapsed();
            let per = values.len() / total;
            let mut offset = 0;
            for r in batch {
                let n = r.shape[0];
                let mut s = shape.clone();
                s[0] = n;
                let rows = values[offset * per..(offset + n) * per].to_vec();
                offset += n;
                let share = took.mul_f64(n as f64 / total as f64);
                let _ = r.reply.send(Ok(Reply { shape: s, values: rows, took: share }));
            }
        }
        // A failed (or oddly shaped) merged run: each request on its own, so only a request that
        // fails by itself gets an error.
        _ => {
            for r in batch {
                run_alone(session, r, run, stats);
            }
        }
    }
}

/// Run one request by itself and answer it.
fn run_alone(session: usize, r: Request, run: &RunFn, stats: &BatchStats) {
    stats.runs.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result =
        run(session, &r.shape, &r.data).map(|(shape, values)| Reply { shape, values, took: started.elapsed() });
    let _ = r.reply.send(result);
}

/// One input of all requests along the batch dimension, each padded with zeros to the widest
/// last dimension.
fn merge(batch: &[Request]) -> (Vec<usize>, Vec<f32>) {
    let rank = batch[0].shape.len();
    let width = batch.iter().map(|r| r.shape[rank - 1]).max().expect("non-empty batch");
    let total: usize = batch.iter().map(|r| r.shape[0]).sum();
    let mut shape = batch[0].shape.clone();
    shape[0] = total;
    shape[rank - 1] = width;
    let rows_per_item: usize = shape[1..rank - 1].iter().product();
    let mut out = vec![0f32; total * rows_per_item * width];
    let mut item = 0;
    for r in batch {
        let w = r.shape[rank - 1];
        for (row, src) in r.data.chunks_exact(w.max(1)).enumerate() {
            let dst = (item * rows_per_item + row) * width;
            out[dst..dst + w].copy_from_slice(src);
        }
        item += r.shape[0];
    }
    (shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "model" that returns each row's sum per item (shape [n, 1]), failing on a NaN.
    fn summing(calls: Arc<Mutex<Vec<Vec<usize>>>>) -> Arc<RunFn> {
        Arc::new(move |_session, shape: &[usize], data: &[f32]| {
            calls.lock().unwrap().push(shape.to_vec());
            std::thread::sleep(Duration::from_millis(20));
            if data.iter().any(|v| v.is_nan()) {
                return Err(Error::Model("NaN in the input".into()));
            }
            let per = data.len() / shape[0];
            Ok((vec![shape[0], 1], data.chunks_exact(per).map(|c| c.iter().sum()).collect()))
        })
    }

    fn policy(max_items: usize, pad_last: bool) -> BatchPolicy {
        BatchPolicy { max_items, max_wait: Duration::from_millis(50), pad_last, max_pad_ratio: 1.5 }
    }

    #[test]
    fn concurrent_requests_share_one_run_and_get_their_own_rows() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::start("t", 1, policy(8, true), summing(calls.clone()));
        // Item k of request j is filled with j*10+k; widths 4 and 5 (padded with zeros).
        let pending: Vec<_> = (0..3)
            .map(|j| {
                let w = 4 + j % 2;
                let data: Vec<f32> = (0..2).flat_map(|k| vec![(j * 10 + k) as f32; w * 2]).collect();
                (j, w, b.submit(&[2, 2, w], &data))
            })
            .collect();
        for (j, w, p) in pending {
            let r = p.wait().unwrap();
            assert_eq!(r.shape, vec![2, 1]);
            let expect: Vec<f32> = (0..2).map(|k| ((j * 10 + k) * w * 2) as f32).collect();
            assert_eq!(r.values, expect, "request {j}");
        }
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0], vec![6, 2, 5]);
        assert_eq!(b.stats.snapshot(), (1, 3, 1, 6));
    }

    #[test]
    fn incompatible_shapes_and_full_batches_run_apart() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::start("t", 1, policy(3, false), summing(calls.clone()));
        let p: Vec<_> =
            [[2usize, 3], [1, 3], [1, 4], [1, 3]].iter().map(|s| b.submit(s, &vec![1.0; s[0] * s[1]])).collect();
        for p in p {
            p.wait().unwrap();
        }
        let mut calls = calls.lock().unwrap().clone();
        calls.sort();
        // [2,3]+[1,3] fill the batch of 3; the other [1,3] and the [1,4] run alone.
        assert_eq!(calls, vec![vec![1, 3], vec![1, 4], vec![3, 3]]);
    }

    #[test]
    fn a_failing_request_fails_alone() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::start("t", 1, policy(8, false), summing(calls.clone()));
        let good = b.submit(&[1, 2], &[1.0, 2.0]);
        let bad = b.submit(&[1, 2], &[f32::NAN, 2.0]);
        let good2 = b.submit(&[1, 2], &[3.0, 4.0]);
        assert_eq!(good.wait().unwrap().values, vec![3.0]);
        assert!(bad.wait().is_err());
        assert_eq!(good2.wait().unwrap().values, vec![7.0]);
    }

    #[test]
    fn single_policy_never_merges_and_sessions_run_side_by_side() {
        let (now, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let run: Arc<RunFn> = {
            let (now, most) = (now.clone(), most.clone());
            Arc::new(move |_session, shape: &[usize], _data: &[f32]| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok((vec![shape[0], 1], vec![0.0; shape[0]]))
            })
        };
        let b = Batcher::start("t", 2, BatchPolicy::SINGLE, run);
        let p: Vec<_> = (0..6).map(|_| b.submit(&[1, 2], &[1.0, 1.0])).collect();
        for p in p {
            p.wait().unwrap();
        }
        let (runs, requests, merged, _) = b.stats.snapshot();
        assert_eq!((runs, requests, merged), (6, 6, 0));
        assert_eq!(most.load(Ordering::SeqCst), 2, "both sessions busy at once, never more");
    }
}
