//! `fieldsync-bench`: the standard sync workload (fixtures/bench/WORKLOAD.md)
//! against a real server process and real replicas; one JSON line per scenario
//! on stdout.
//!
//! ```sh
//! cargo run --release -p tests --bin fieldsync-bench -- push_full pull_full incremental conflict photos photos_resume
//! ```

use std::io::Write as _;
use std::path::PathBuf;

use clap::Parser;

/// The tablets' allocator, as in `fieldsync-device`: with glibc's, a tenth of a
/// pull's time on the device side was malloc and free.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tests::bench::{self, Options, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync-bench",
    about = "Sync benchmark of fieldsync on the standard workload"
)]
struct Cli {
    /// Scenarios to run, in order: push_full, pull_full, incremental, conflict, photos, photos_resume [default: all six].
    scenarios: Vec<Scenario>,
    /// The JSONL workload [default: fixtures/bench/workload-5000.jsonl].
    #[arg(long)]
    workload: Option<PathBuf>,
    /// Only the first N records of the workload.
    #[arg(long)]
    records: Option<usize>,
    /// Fold the workload's devices onto at most N tablets.
    #[arg(long)]
    devices: Option<usize>,
    /// Tablets syncing at the same time in push_full and set-up.
    #[arg(long, default_value_t = Options::standard().concurrency)]
    concurrency: usize,
    /// Changes per push request, fixed [default: the replica's pacing, 64 growing to 500].
    #[arg(long)]
    push_batch: Option<usize>,
    /// Records per pull page, fixed [default: the replica's pacing, 100 growing to 500].
    #[arg(long)]
    pull_limit: Option<usize>,
    /// Keep the server's and tablets' stores here instead of a temporary folder.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Photos of the photo scenarios [default: 600, 0.3–1.5 MB each].
    #[arg(long)]
    photos: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let scenarios = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        cli.scenarios
    };
    let options = Options {
        workload: cli.workload.unwrap_or_else(bench::default_workload),
        records: cli.records,
        devices: cli.devices,
        concurrency: cli.concurrency.max(1),
        push_batch: cli.push_batch,
        pull_limit: cli.pull_limit,
        dir: cli.dir,
        verbose: !cli.quiet,
        photos: match cli.photos {
            Some(count) => bench::photos::PhotoSizes {
                count,
                ..bench::photos::PhotoSizes::standard()
            },
            None => bench::photos::PhotoSizes::standard(),
        },
    };
    let mut stdout = std::io::stdout().lock();
    bench::run(&options, &scenarios, |report| {
        if let Ok(line) = serde_json::to_string(report) {
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
    })?;
    Ok(())
}
