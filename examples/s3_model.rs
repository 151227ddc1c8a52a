//! The modelled S3 (tests/common/s3model.rs) as a process, for benchmarks and boto3: prints its URL
//! (`http://127.0.0.1:PORT`) as the first line of stdout, then serves until stdin closes or it is killed.
//!
//! ```text
//! cargo run --release --example s3_model -- --latency-ms 20 --conn-mbps 90 --aggregate-mbps 1000 \
//!     --slow-down-per-mille 10 --trickle-once-get 3 --bucket bench --dir /tmp/objects < <(sleep infinity)
//! ```
//! Rates are in MB/s (10^6 bytes). Buckets named by `--bucket` (repeatable) exist from the start;
//! `--put BUCKET/KEY=FILE` (repeatable) stores a file's bytes as an object before the URL is printed.

#[path = "../tests/common/s3model.rs"]
mod s3model;

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use s3model::{Fault, Knobs, S3Model};

const USAGE: &str = "usage: s3_model [--latency-ms N] [--conn-mbps N] [--aggregate-mbps N] \
[--slow-down-per-mille N] [--internal-error-per-mille N] [--reset-per-mille N] [--seed N] \
[--trickle-once-get N] [--reset-once-get N] [--bucket NAME]... [--put BUCKET/KEY=FILE]... [--dir DIR]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("s3_model: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut knobs = Knobs::default();
    let mut buckets = Vec::new();
    let mut puts = Vec::new();
    let mut dir = None;
    let mut seed = 1;
    let mut rates: Vec<(&str, u32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|_| format!("{flag}: not a number: {text:?}"));
        match flag.as_str() {
            "--latency-ms" => knobs.first_byte = Duration::from_millis(number(value()?)?),
            "--conn-mbps" => knobs.per_connection = Some(number(value()?)? * 1_000_000),
            "--aggregate-mbps" => knobs.aggregate = Some(number(value()?)? * 1_000_000),
            "--slow-down-per-mille" | "--internal-error-per-mille" | "--reset-per-mille" => {
                let per_mille = u32::try_from(number(value()?)?).map_err(|_| format!("{flag}: too large"))?;
                rates.push((
                    if flag.starts_with("--slow") {
                        "slow"
                    } else if flag.starts_with("--internal") {
                        "internal"
                    } else {
                        "reset"
                    },
                    per_mille,
                ));
            }
            "--seed" => seed = number(value()?)?,
            "--trickle-once-get" => knobs.trickle = (Fault::Once(number(value()?)?), vec!["GetObject"]),
            "--reset-once-get" => knobs.reset = (Fault::Once(number(value()?)?), vec!["GetObject"]),
            "--bucket" => buckets.push(value()?),
            "--put" => {
                let spec = value()?;
                let (object, file) = spec.split_once('=').ok_or("--put takes BUCKET/KEY=FILE")?;
                let (bucket, key) = object.split_once('/').ok_or("--put takes BUCKET/KEY=FILE")?;
                puts.push((bucket.to_owned(), key.to_owned(), PathBuf::from(file)));
            }
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    for (kind, per_mille) in rates {
        let fault = Fault::Rate { per_million: per_mille.saturating_mul(1000), seed };
        match kind {
            "slow" => knobs.slow_down = (fault, Vec::new()),
            "internal" => knobs.internal_error = (fault, Vec::new()),
            _ => knobs.reset = (fault, Vec::new()),
        }
    }
    let model = match &dir {
        Some(dir) => S3Model::start_in(dir, knobs),
        None => S3Model::start(knobs),
    };
    for bucket in &buckets {
        model.create_bucket(bucket);
    }
    for (bucket, key, file) in &puts {
        model.put_file(bucket, key, file).map_err(|error| format!("--put {}: {error}", file.display()))?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", model.url).and_then(|()| stdout.flush()).map_err(|error| format!("stdout: {error}"))?;
    // Serves until stdin closes (the parent went away) or the process is killed.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    Ok(())
}
