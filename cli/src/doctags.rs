//! `docfleet doctags`: DocTags saved elsewhere (a VLM's output) → Markdown, HTML or JSON on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use docfleet_core::doctags::{self, PageInput};

/// Output formats of `docfleet doctags`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum)]
    to: Format,
    /// Page size in pixels as WIDTHxHEIGHT (e.g. 1275x1650), for boxes in page pixels in JSON;
    /// without it boxes stay on DocTags' 0–500 grid.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    page_size: Option<(f64, f64)>,
    /// DocTags file, `-` for stdin; `<page_break>` separates pages.
    file: PathBuf,
}

fn parse_size(s: &str) -> Result<(f64, f64), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
    let num = |v: &str| match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("expected a positive number of pixels, got {v:?} in {s:?}")),
    };
    Ok((num(w)?, num(h)?))
}

/// Converts the file and prints the result; warnings (cut-off pages, unsupported tags) go to stderr.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut bytes = Vec::new();
    let name = if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading DocTags from stdin")?;
        "stdin".to_string()
    } else {
        bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
        args.file.display().to_string()
    };
    let Ok(text) = String::from_utf8(bytes) else {
        bail!("{name} is not UTF-8 text: DocTags are text");
    };
    let pages: Vec<PageInput> =
        doctags::split_pages(&text).into_iter().map(|p| PageInput { doctags: p, size: args.page_size }).collect();
    let doc = doctags::parse(&pages);
    for w in &doc.warnings {
        eprintln!("warning: {w}");
    }
    let out = match args.to {
        Format::Markdown => doc.to_markdown() + "\n",
        Format::Html => {
            let title =
                args.file.file_stem().and_then(|s| s.to_str()).filter(|_| name != "stdin").unwrap_or("document");
            doc.to_html(title)
        }
        Format::Json => serde_json::to_string_pretty(&doc.to_json())? + "\n",
    };
    std::io::stdout().lock().write_all(out.as_bytes()).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
