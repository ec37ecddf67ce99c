//! `bench`: measures stuck-hr-recovery against the kubectl baseline on the fake
//! API server (issue 6) and prints the figures as markdown. Run it through
//! `scripts/bench`, which builds the release binary first.
//!
//! Every run gets a fresh in-process fake API server seeded with
//! `fake_apiserver::generate::cluster` (a run repairs the cluster, so nothing is
//! reused). Exits non-zero when any run misbehaved: the product's request log
//! departs from the formula, a report or end state is wrong.

mod cases;
mod child;
mod paged;
mod requests;
mod run;
mod stats;
mod table;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use crate::cases::Case;
use crate::run::{Setup, Tool};
use crate::table::Row;

#[derive(Clone, Copy, ValueEnum)]
enum User {
    /// The rbac/ ServiceAccount; the fake server enforces rbac/.
    ServiceAccount,
    /// Cluster admin.
    Admin,
}

#[derive(Parser)]
#[command(about = "Benchmarks stuck-hr-recovery against the kubectl baseline (issue 6)")]
struct Args {
    /// Runs of stuck-hr-recovery per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of the kubectl baseline per case [default: 3 where it toggles at
    /// most 10 HelmReleases (about a minute a run), else 1 (minutes a run)].
    #[arg(long)]
    baseline_runs: Option<usize>,
    /// Stop a baseline run after this many seconds and report a lower bound (0: never).
    #[arg(long, default_value_t = 150)]
    baseline_cap: u64,
    /// Run only these cases (comma-separated: a,b1000,b1000g,b100,b0,c,s1k,s10k,s50k,d10k,d50k; smoke checks the harness).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Do not run the kubectl baseline at all.
    #[arg(long)]
    skip_baseline: bool,
    /// Identity stuck-hr-recovery runs as (the baseline always runs as admin).
    #[arg(long, value_enum, default_value = "service-account")]
    user: User,
    /// The product binary [default: target/release/stuck-hr-recovery].
    #[arg(long)]
    product: Option<PathBuf>,
    /// kubectl for the baseline [default: the baseline's own choice].
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// Where each run's stdout and stderr go [default: target/bench/logs].
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

fn main() {
    let mut argv = std::env::args_os();
    let first = argv.nth(1);
    if first.as_ref().is_some_and(|a| a == paged::PAGED_GET) {
        if let Err(e) = paged::main() {
            eprintln!("bench {}: {e:#}", paged::PAGED_GET);
            std::process::exit(2);
        }
        return;
    }
    if first.is_some_and(|a| a == child::MEASURE) {
        if let Err(e) = child::measure_main(argv.collect()) {
            eprintln!("bench {}: {e:#}", child::MEASURE);
            std::process::exit(2);
        }
        return;
    }
    match run_all(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs every selected case and prints the tables; `Ok(false)` when a check failed.
fn run_all(args: Args) -> Result<bool> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().context("finding the repository root")?;
    let setup = Setup {
        rbac_dir: repo.join("rbac"),
        product: args
            .product
            .unwrap_or_else(|| repo.join("target/release/stuck-hr-recovery")),
        baseline: repo.join("bench/baseline.sh"),
        kubectl: args.kubectl,
        log_dir: args
            .log_dir
            .unwrap_or_else(|| repo.join("target/bench/logs")),
        product_user: match args.user {
            User::ServiceAccount => run::SERVICE_ACCOUNT_USER,
            User::Admin => run::ADMIN_USER,
        },
        baseline_cap: (args.baseline_cap > 0).then(|| Duration::from_secs(args.baseline_cap)),
    };
    if !setup.product.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release`",
            setup.product.display()
        );
    }
    std::fs::create_dir_all(&setup.log_dir).context("creating the log directory")?;

    let all = cases::all();
    for id in &args.cases {
        if !all.iter().any(|c| c.id == id) {
            bail!("unknown case {id:?}");
        }
    }
    let selected: Vec<&Case> = all
        .iter()
        .filter(|c| {
            if args.cases.is_empty() {
                c.by_default
            } else {
                args.cases.iter().any(|id| id == c.id)
            }
        })
        .collect();

    let floor = child::run(
        &std::process::Command::new("true"),
        "rss-floor",
        &setup.log_dir,
        None,
    )
    .context("measuring the RSS floor with `true`")?;
    let started = Instant::now();
    let load_before = load_average();
    let mut rows = Vec::new();
    for case in selected {
        let mut tools = vec![(Tool::Ours, args.runs)];
        if case.paged_get {
            tools.push((Tool::PagedGet, args.runs));
        }
        if case.baseline && !args.skip_baseline {
            let n = args
                .baseline_runs
                .unwrap_or(if case.stuck() <= 10 { 3 } else { 1 });
            tools.push((Tool::Baseline, n));
        }
        for (tool, n) in tools {
            let mut row = Row {
                case,
                tool,
                runs: Vec::new(),
            };
            for i in 1..=n {
                let r = run::run(&setup, case, tool, i)?;
                eprintln!(
                    "[{}] {} run {i}/{n}: {:.2} s, exit {}, peak RSS {}, {} requests{}",
                    case.id,
                    tool.name(),
                    r.measured.wall.as_secs_f64(),
                    r.measured.exit_code,
                    stats::mib(r.measured.max_rss_kib),
                    r.requests.len(),
                    if r.problems.is_empty() {
                        ""
                    } else {
                        ", PROBLEMS"
                    }
                );
                row.runs.push(r);
            }
            rows.push(row);
        }
    }

    let problems: Vec<&String> = rows
        .iter()
        .flat_map(|r| &r.runs)
        .flat_map(|r| &r.problems)
        .collect();
    println!("## Machine\n");
    println!("{}", machine());
    println!(
        "- load average before / after: {load_before} / {}; benchmark took {:.0} s",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "- peak RSS is `wait4`'s `ru_maxrss` of the process, measured from a small helper; its floor (`true`): {}",
        stats::mib(floor.max_rss_kib)
    );
    println!(
        "- stuck-hr-recovery runs as `{}`{}; the baseline as `admin`; fresh seeded server per run\n",
        setup.product_user,
        if setup.product_user == run::ADMIN_USER {
            ""
        } else {
            " (rbac/ enforced by the fake server)"
        }
    );
    println!("## Comparison (wall time includes the 5 s suspend wait of both tools)\n");
    println!("{}", table::compare(&rows));
    println!("## Scaling (stuck-hr-recovery, 10 + 10 stuck, --suspend-wait 1ms)\n");
    println!("{}", table::scaling(&rows));
    if rows.iter().any(|r| r.tool == Tool::PagedGet) {
        println!(
            "## Decoding (stuck-hr-recovery --dry-run against a bare paged GET of the same pages)\n"
        );
        println!("{}", table::decoding(&rows));
    }
    println!("## Request-count formula (every run of stuck-hr-recovery)\n");
    println!("{}", table::formula(&rows));
    if problems.is_empty() {
        println!("All checks passed: reports, end states and request logs as expected.");
    } else {
        println!("## CHECKS FAILED\n");
        for p in &problems {
            println!("- {p}");
        }
    }
    Ok(problems.is_empty())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU, cores, memory and kernel, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "- {cpu}, {cores} cores, {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}
