//! `docfleet status`: queue and DLQ depth, results and errors written.

use comfy_table::Table;
use docfleet_core::{Backends, Settings};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, backends: &Backends, args: &Args) -> anyhow::Result<()> {
    let (queue, dlq) = tokio::try_join!(backends.queue.depth(), backends.dlq.depth())?;
    let out_bucket = &settings.store.output_bucket;
    let (results, errors) = tokio::try_join!(
        backends.store.list(out_bucket, &settings.store.results_prefix),
        backends.store.list(out_bucket, &settings.store.errors_prefix),
    )?;
    let results = results.iter().filter(|o| o.key.ends_with(".json")).count();
    if args.json {
        let v = json!({
            "queue": {"name": backends.queue.name(), "depth": queue},
            "dlq": {"name": backends.dlq.name(), "depth": dlq},
            "results": results,
            "errors": errors.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header(vec!["", "visible", "in flight", "delayed"]);
    for (name, d) in [(backends.queue.name(), queue), (backends.dlq.name(), dlq)] {
        table.add_row(vec![name.to_owned(), d.visible.to_string(), d.in_flight.to_string(), d.delayed.to_string()]);
    }
    println!("{table}");
    println!("results written: {results}   error records: {}   (bucket {out_bucket})", errors.len());
    Ok(())
}
