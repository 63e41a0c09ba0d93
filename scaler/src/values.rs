//! What every API serves: the value of one metric for one queue, from the depth cache and (for
//! backlog seconds) fleet throughput.

use std::sync::Arc;
use std::time::Instant;

use crate::depth::{DepthCache, Reading};
use crate::fleet::Fleet;
use crate::metrics::{Metrics, QueueLabel};
use crate::{BACKLOG_METRIC, DEPTH_METRIC, Error, Result};

/// A metric the scaler serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// [`DEPTH_METRIC`]: messages.
    Depth,
    /// [`BACKLOG_METRIC`]: seconds to drain at the fleet's current throughput.
    BacklogSeconds,
}

impl MetricKind {
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Depth => DEPTH_METRIC,
            MetricKind::BacklogSeconds => BACKLOG_METRIC,
        }
    }
}

/// One value with the reading it came from.
#[derive(Debug, Clone, Copy)]
pub struct Value {
    pub value: f64,
    pub reading: Reading,
}

/// The values behind every API.
pub struct Values {
    pub cache: Arc<DepthCache>,
    /// Present when `scaler.backlog_seconds` is on.
    pub fleet: Option<Arc<Fleet>>,
    pub backlog_cap_seconds: f64,
    pub metrics: Arc<Metrics>,
}

impl Values {
    /// Metrics served, in discovery order.
    pub fn served(&self) -> Vec<MetricKind> {
        let mut kinds = vec![MetricKind::Depth];
        if self.fleet.is_some() {
            kinds.push(MetricKind::BacklogSeconds);
        }
        kinds
    }

    /// The metric called `name`, if served.
    pub fn metric(&self, name: &str) -> Result<MetricKind> {
        self.served()
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownMetric(name.to_owned(), self.served().iter().map(|k| k.name()).collect()))
    }

    /// The value of `kind` for `queue`.
    pub async fn get(&self, kind: MetricKind, queue: &str) -> Result<Value> {
        let reading = self.cache.get(queue).await?;
        let value = match kind {
            MetricKind::Depth => reading.value as f64,
            MetricKind::BacklogSeconds => {
                let fleet = self.fleet.as_ref().ok_or_else(|| {
                    Error::UnknownMetric(BACKLOG_METRIC.into(), self.served().iter().map(|k| k.name()).collect())
                })?;
                let backlog = backlog_seconds(reading.value, fleet.jobs_per_second(), self.backlog_cap_seconds)?;
                self.metrics.backlog_seconds.get_or_create(&QueueLabel { queue: queue.into() }).set(backlog);
                backlog
            }
        };
        Ok(Value { value, reading })
    }

    /// Count one answered request and its latency.
    pub fn observe<T>(&self, api: &str, started: Instant, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.metric_label(),
        };
        self.metrics.request(api, outcome, started.elapsed().as_secs_f64());
    }
}

/// `depth ÷ jobs_per_second`, capped; an empty queue is 0 whatever the throughput.
pub fn backlog_seconds(depth: u64, jobs_per_second: Option<f64>, cap: f64) -> Result<f64> {
    if depth == 0 {
        return Ok(0.0);
    }
    match jobs_per_second {
        None => Err(Error::Unavailable {
            what: "backlog seconds".into(),
            reason: "fleet throughput not measured yet (needs two reads of the workers' /metrics)".into(),
        }),
        Some(rate) if rate > 0.0 => Ok((depth as f64 / rate).min(cap)),
        // Messages wait and nothing finished within the window: as long as it gets.
        Some(_) => Ok(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_depth_over_throughput_capped() {
        assert_eq!(backlog_seconds(0, None, 100.0).unwrap(), 0.0);
        assert_eq!(backlog_seconds(120, Some(4.0), 1000.0).unwrap(), 30.0);
        assert_eq!(backlog_seconds(120, Some(0.01), 1000.0).unwrap(), 1000.0);
        assert_eq!(backlog_seconds(5, Some(0.0), 1000.0).unwrap(), 1000.0);
        assert!(matches!(backlog_seconds(5, None, 1000.0), Err(Error::Unavailable { .. })));
    }
}
