//! `docfleet-worker` as a library: the worker loop, the pipelines and document handling.
//! The `docfleet` CLI embeds the same worker for `docfleet run`.

pub mod batch;
pub mod document;
pub mod graph;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod runner;
pub mod runtime;
pub mod shutdown;

pub use pipeline::{Pipeline, Pipelines};
pub use runner::{StopWhen, Summary, Worker};
