//! `testbed up [--helm-controller VERSION]` starts the testbed in the
//! background and prints the admin kubeconfig's path as its last line;
//! `testbed down` stops all of it. State (pids, logs, the cluster's
//! directory) lives in `--state-dir` (default `<repo>/.tools/testbed-up`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "A real cluster on loopback: etcd, kube-apiserver, source-controller, helm-controller"
)]
struct Cli {
    /// Where pids, logs and the cluster's directory live.
    #[arg(long, global = true, env = "TESTBED_STATE")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start in the background; the last line printed is the admin kubeconfig.
    Up(UpArgs),
    /// Stop everything `up` started.
    Down,
    /// (internal) Run the testbed in the foreground until SIGTERM/SIGINT.
    Serve(UpArgs),
}

#[derive(clap::Args, Clone)]
struct UpArgs {
    /// helm-controller version to run (v1.4.3, v1.6.3, v1.6.4).
    #[arg(long, default_value_t = testbed::default_helm_controller())]
    helm_controller: String,
    /// Start etcd, kube-apiserver and the CRDs only.
    #[arg(long)]
    no_controllers: bool,
}

const SERVE_PID: &str = "serve.pid";
const PIDS: &str = "pids";
const READY: &str = "admin-kubeconfig";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = cli
        .state_dir
        .unwrap_or_else(|| testbed::tools::repo_root().join(".tools/testbed-up"));
    let result = match cli.command {
        Cmd::Up(args) => up(&state, &args),
        Cmd::Down => down(&state),
        Cmd::Serve(args) => serve(&state, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(state: &Path, args: &UpArgs) -> anyhow::Result<()> {
    if let Some(pid) = read_pid(&state.join(SERVE_PID))
        && alive(pid, "testbed")
    {
        bail!(
            "already up (pid {pid}, state {}); run `scripts/testbed down` first",
            state.display()
        );
    }
    std::fs::create_dir_all(state)?;
    for stale in [SERVE_PID, PIDS, READY] {
        let _ = std::fs::remove_file(state.join(stale));
    }
    let log_path = state.join("serve.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--state-dir")
        .arg(state)
        .arg("serve")
        .arg("--helm-controller")
        .arg(&args.helm_controller);
    if args.no_controllers {
        cmd.arg("--no-controllers");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    // SAFETY: setsid(2) only, between fork and exec: the server outlives this
    // shell and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting testbed serve")?;
    std::fs::write(state.join(SERVE_PID), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(kubeconfig) = std::fs::read_to_string(state.join(READY)) {
            let summary = std::fs::read_to_string(state.join(PIDS)).unwrap_or_default();
            println!("testbed up (state {}):", state.display());
            for line in summary.lines() {
                println!("  {line}");
            }
            println!("stop it with: scripts/testbed down");
            println!("{}", kubeconfig.trim());
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "testbed serve exited ({status}) before it was ready; {}:\n{}",
                log_path.display(),
                testbed::process::tail(&log_path, 60)
            );
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            bail!(
                "not ready after 600s; {}:\n{}",
                log_path.display(),
                testbed::process::tail(&log_path, 60)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn serve(state: &Path, args: &UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut options = if args.no_controllers {
            testbed::Options::apiserver_only()
        } else {
            testbed::Options::default()
        };
        options.helm_controller = args.helm_controller.clone();
        options.parent_dir = Some(state.to_path_buf());
        let bed = tokio::select! {
            bed = testbed::Testbed::start(options) => bed?,
            _ = sigterm.recv() => bail!("SIGTERM while starting"),
            _ = tokio::signal::ctrl_c() => bail!("SIGINT while starting"),
        };
        let mut pids = format!("testbed-serve {}\n", std::process::id());
        for (name, pid) in bed.pids() {
            pids.push_str(&format!("{name} {pid}\n"));
        }
        pids.push_str(&format!("apiserver {}\n", bed.apiserver_url()));
        if let Some(url) = bed.chart_repo_url() {
            pids.push_str(&format!("chart-repo {url}\n"));
        }
        pids.push_str(&format!("dir {}\n", bed.path().display()));
        pids.push_str(&format!(
            "started in {:.1}s\n",
            bed.timings().total.as_secs_f64()
        ));
        std::fs::write(state.join(PIDS), &pids)?;
        std::fs::write(
            state.join(READY),
            format!("{}\n", bed.admin_kubeconfig().display()),
        )?;
        println!("ready:\n{pids}");
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!("stopping");
        let _ = std::fs::remove_file(state.join(READY));
        drop(bed);
        let _ = std::fs::remove_file(state.join(PIDS));
        println!("stopped");
        Ok(())
    })
}

fn down(state: &Path) -> anyhow::Result<()> {
    let pids_text = std::fs::read_to_string(state.join(PIDS)).unwrap_or_default();
    let Some(serve) = read_pid(&state.join(SERVE_PID)) else {
        println!(
            "testbed: nothing to stop ({} has no {SERVE_PID})",
            state.display()
        );
        return Ok(());
    };
    if alive(serve, "testbed") {
        // SAFETY: kill(2) on the pid `up` recorded, checked to be ours.
        unsafe { libc::kill(serve as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(serve, "testbed") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(serve, "testbed") {
            eprintln!("testbed: serve (pid {serve}) still running after 30s; SIGKILL");
            unsafe { libc::kill(serve as libc::pid_t, libc::SIGKILL) };
        }
    }
    // Whatever the server started dies with it (PDEATHSIG); make sure.
    let mut left = Vec::new();
    for line in pids_text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid, process_hint(name)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid, process_hint(name)) {
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            left.push(format!("{name} {pid}"));
        }
    }
    for stale in [SERVE_PID, PIDS, READY] {
        let _ = std::fs::remove_file(state.join(stale));
    }
    // A cluster directory a killed server could not remove.
    if let Ok(entries) = std::fs::read_dir(state) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with("testbed-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if !left.is_empty() {
        eprintln!("testbed: had to SIGKILL leftovers: {left:?}");
    }
    println!("testbed: down");
    Ok(())
}

/// The string a process's command line contains (guards against pid reuse).
fn process_hint(name: &str) -> &str {
    match name {
        "chart-repo" => "http.server",
        "testbed-serve" => "testbed",
        other => other,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs and its command line contains `hint` (not a zombie).
fn alive(pid: u32, hint: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some((_, rest)) = stat.rsplit_once(')')
        && rest.trim_start().starts_with('Z')
    {
        return false;
    }
    String::from_utf8_lossy(&cmdline).contains(hint)
}
