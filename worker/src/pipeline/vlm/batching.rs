//! Cross-job generation batches for the `vlm` pipeline (`vlm.batch_across_jobs`).
//!
//! Every job in flight puts its preprocessed pages on one queue. One caller at a time runs
//! generation: it takes the oldest waiting page and up to `batch_size - 1` more with the same
//! prompt and token limit (pages of any job; a page is whatever the family's generation takes:
//! pixel values for vision-encoder-decoder models, tiles plus prompt ids for Idefics3), waits
//! up to `batch_max_wait_ms` for more when the batch has room, generates, and hands every row to
//! its owner. It keeps serving batches until its own pages are done, then the next waiting caller
//! takes over. A failed merged batch is run again page by page, so only the page that fails
//! fails its job.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};

use super::generate::{Generated, Times};

/// Pages that may share a batch: the same prompt ids and token limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub prompt: Vec<i64>,
    pub max_new_tokens: usize,
}

/// One page's generation, as it ran.
#[derive(Debug, Clone)]
pub struct Row {
    pub generated: Generated,
    /// The batch it ran in: a number unique to that batch, its size and times.
    pub batch_id: u64,
    pub batch_size: usize,
    pub times: Times,
}

/// A job's rows from [`GenerationQueue::generate`], in page order, each with its page's own
/// value (preprocessing time, prompt …) through `page`. A model error names its page (from 1);
/// batches are numbered from 0 in the order this job's pages met them.
pub fn job_pages<P, T>(
    rows: Vec<Result<Row>>,
    per_page: impl IntoIterator<Item = P>,
    mut page: impl FnMut(Row, P, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let mut seen: Vec<u64> = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for (i, (row, own)) in rows.into_iter().zip(per_page).enumerate() {
        let row = row.map_err(|e| match e {
            Error::Model(m) => Error::Model(format!("page {}: {m}", i + 1)),
            other => other,
        })?;
        let batch = seen.iter().position(|&b| b == row.batch_id).unwrap_or_else(|| {
            seen.push(row.batch_id);
            seen.len() - 1
        });
        out.push(page(row, own, batch)?);
    }
    Ok(out)
}

struct Request<P> {
    id: u64,
    key: Key,
    page: P,
}

struct State<P> {
    queue: VecDeque<Request<P>>,
    done: HashMap<u64, Result<Row>>,
    running: bool,
    next_id: u64,
    batches: u64,
    merged_batches: u64,
}

impl<P> Default for State<P> {
    fn default() -> Self {
        Self { queue: VecDeque::new(), done: HashMap::new(), running: false, next_id: 0, batches: 0, merged_batches: 0 }
    }
}

/// The cross-job queue of pages `P`.
pub struct GenerationQueue<P = Vec<f32>> {
    state: Mutex<State<P>>,
    changed: Condvar,
    max_batch: usize,
    max_wait: Duration,
}

/// Runs one batch: `(its pages, key)` → one row per page and times.
pub type RunBatch<'a, P> = dyn Fn(&[&P], &Key) -> Result<(Vec<Generated>, Times)> + 'a;

impl<P> GenerationQueue<P> {
    pub fn new(max_batch: usize, max_wait: Duration) -> Self {
        Self { state: Mutex::new(State::default()), changed: Condvar::new(), max_batch: max_batch.max(1), max_wait }
    }

    /// Generate for `pages`, sharing batches with other callers' pages of the same key. Results
    /// in the order of `pages`.
    pub fn generate(&self, key: &Key, pages: Vec<P>, run: &RunBatch<'_, P>) -> Vec<Result<Row>> {
        let mut state = self.state.lock().expect("queue lock");
        let mut mine = Vec::with_capacity(pages.len());
        for page in pages {
            let id = state.next_id;
            state.next_id += 1;
            mine.push(id);
            state.queue.push_back(Request { id, key: key.clone(), page });
        }
        self.changed.notify_all();
        loop {
            if mine.iter().all(|id| state.done.contains_key(id)) {
                let rows = mine.iter().map(|id| state.done.remove(id).expect("checked")).collect();
                return rows;
            }
            if state.running || state.queue.is_empty() {
                state = self.changed.wait(state).expect("queue lock");
                continue;
            }
            state.running = true;
            let (guard, batch) = self.take_batch(state);
            drop(guard);
            let results = run_batch(batch, run);
            state = self.state.lock().expect("queue lock");
            if results.len() > 1 {
                state.merged_batches += 1;
            }
            state.batches += 1;
            state.done.extend(results);
            state.running = false;
            self.changed.notify_all();
        }
    }

    /// The oldest request and up to `max_batch - 1` more with its key, waiting up to `max_wait`
    /// for company when there is room (the lock is released while waiting).
    #[allow(clippy::type_complexity)]
    fn take_batch<'a>(&'a self, mut state: MutexGuard<'a, State<P>>) -> (MutexGuard<'a, State<P>>, Vec<Request<P>>) {
        let first = state.queue.pop_front().expect("queue not empty");
        let key = first.key.clone();
        let mut batch = vec![first];
        let deadline = Instant::now() + self.max_wait;
        loop {
            let mut i = 0;
            while batch.len() < self.max_batch && i < state.queue.len() {
                if state.queue[i].key == key {
                    batch.push(state.queue.remove(i).expect("index in range"));
                } else {
                    i += 1;
                }
            }
            let now = Instant::now();
            if batch.len() >= self.max_batch || now >= deadline {
                return (state, batch);
            }
            state = self.changed.wait_timeout(state, deadline - now).expect("queue lock").0;
        }
    }

    /// Batches run so far and how many of them merged more than one page.
    pub fn stats(&self) -> (u64, u64) {
        let s = self.state.lock().expect("queue lock");
        (s.batches, s.merged_batches)
    }
}

/// Run one batch; on failure of a merged batch, each page again on its own.
fn run_batch<P>(batch: Vec<Request<P>>, run: &RunBatch<'_, P>) -> Vec<(u64, Result<Row>)> {
    static BATCH_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let next_id = || BATCH_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = batch[0].key.clone();
    let n = batch.len();
    let pages: Vec<&P> = batch.iter().map(|r| &r.page).collect();
    match run(&pages, &key) {
        Ok((rows, times)) if rows.len() == n => {
            let batch_id = next_id();
            batch
                .iter()
                .zip(rows)
                .map(|(r, generated)| (r.id, Ok(Row { generated, batch_id, batch_size: n, times })))
                .collect()
        }
        Ok((rows, _)) => batch
            .iter()
            .map(|r| {
                let e = docfleet_core::Error::Model(format!("generation returned {} rows for {n} pages", rows.len()));
                (r.id, Err(e))
            })
            .collect(),
        Err(e) if n == 1 => vec![(batch[0].id, Err(e))],
        Err(_) => batch
            .into_iter()
            .map(|r| {
                let out = run(&[&r.page], &r.key).and_then(|(mut rows, times)| {
                    let generated =
                        rows.pop().ok_or_else(|| docfleet_core::Error::Model("generation returned no row".into()))?;
                    Ok(Row { generated, batch_id: next_id(), batch_size: 1, times })
                });
                (r.id, out)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::pipeline::vlm::generate::Finish;

    const PAGE: usize = 4;

    type Generation = Result<(Vec<Generated>, Times)>;

    /// A fake model: each page's first value is its identity, echoed back as its only token; the
    /// second must be the batch's token limit; identity 666 makes any batch holding it fail.
    fn fake(max: usize, sizes: &Mutex<Vec<usize>>) -> impl Fn(&[&Vec<f32>], &Key) -> Generation + '_ {
        move |rows, key| {
            let n = rows.len();
            assert!(rows.iter().all(|r| r.len() == PAGE));
            assert!(n <= max, "batch of {n} over {max}");
            sizes.lock().unwrap().push(n);
            assert!(rows.iter().all(|r| r[1] as usize == key.max_new_tokens), "pages of another key merged in");
            if rows.iter().any(|r| r[0] == 666.0) {
                return Err(docfleet_core::Error::Model("bad page".into()));
            }
            let out = rows.iter().map(|r| Generated { ids: vec![r[0] as i64], finish: Finish::Eos }).collect();
            Ok((out, Times::default()))
        }
    }

    fn pages(ids: &[i64], limit: usize) -> Vec<Vec<f32>> {
        ids.iter().map(|&i| vec![i as f32, limit as f32, 0.0, 0.0]).collect()
    }

    /// Six callers at once, two token limits: every page comes back to its caller, batches never
    /// mix keys or pass the maximum, and pages of different callers did share batches.
    #[test]
    fn pages_of_concurrent_jobs_share_batches_and_come_back_to_their_job() {
        let queue = Arc::new(GenerationQueue::new(4, Duration::from_millis(200)));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let start = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6i64)
            .map(|caller| {
                let (queue, sizes, start) = (queue.clone(), sizes.clone(), start.clone());
                std::thread::spawn(move || {
                    let limit = 10 + (caller % 2) as usize;
                    let key = Key { prompt: vec![2], max_new_tokens: limit };
                    let mine = [caller * 100 + 1, caller * 100 + 2];
                    start.wait();
                    let rows = queue.generate(&key, pages(&mine, limit), &fake(4, &sizes));
                    let got: Vec<i64> = rows.into_iter().map(|r| r.unwrap().generated.ids[0]).collect();
                    assert_eq!(got, mine, "caller {caller} got another job's pages");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 12, "{sizes:?}");
        let (batches, merged) = queue.stats();
        assert_eq!(batches as usize, sizes.len());
        assert!(merged > 0 && sizes.len() < 6, "pages of different jobs merged: {sizes:?}");
    }

    /// A page that fails its merged batch fails only its own job: the batch is run again page by
    /// page and the others get their tokens.
    #[test]
    fn a_failing_page_fails_only_its_job() {
        let queue = Arc::new(GenerationQueue::new(8, Duration::from_millis(200)));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let start = Arc::new(Barrier::new(3));
        let handles: Vec<_> = [vec![1, 2], vec![666], vec![3]]
            .into_iter()
            .map(|mine| {
                let (queue, sizes, start) = (queue.clone(), sizes.clone(), start.clone());
                std::thread::spawn(move || {
                    let key = Key { prompt: vec![2], max_new_tokens: 5 };
                    start.wait();
                    let rows = queue.generate(&key, pages(&mine, 5), &fake(8, &sizes));
                    (mine, rows)
                })
            })
            .collect();
        for h in handles {
            let (mine, rows) = h.join().unwrap();
            if mine == [666] {
                assert!(rows[0].as_ref().is_err_and(|e| e.to_string().contains("bad page")));
            } else {
                let got: Vec<i64> = rows.into_iter().map(|r| r.unwrap().generated.ids[0]).collect();
                assert_eq!(got, mine);
            }
        }
        assert!(sizes.lock().unwrap().iter().any(|&n| n > 1), "the pages met in one batch first");
    }
}
