//! One measured run of one tool on a freshly seeded fake API server, and the
//! checks that the run did what it should (so a fast but wrong run cannot pass
//! for a result).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use fake_apiserver::generate::{self, ClusterSpec};
use fake_apiserver::{FakeApiServer, RecordedRequest, ServerConfig};
use serde_json::Value;

use crate::cases::Case;
use crate::child::{self, Measured};
use crate::requests;

pub const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:flux-system:stuck-hr-recovery";
pub const ADMIN_USER: &str = "admin";

/// Which tool a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Ours,
    Baseline,
    /// A bare keep-alive paged GET of the same list ([`crate::paged`]).
    PagedGet,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ours => "stuck-hr-recovery",
            Tool::Baseline => "kubectl baseline",
            Tool::PagedGet => "bare paged GET",
        }
    }
}

/// Where things are and how to run them; fixed for the whole benchmark.
pub struct Setup {
    pub rbac_dir: PathBuf,
    pub product: PathBuf,
    pub baseline: PathBuf,
    pub kubectl: Option<PathBuf>,
    pub log_dir: PathBuf,
    /// Identity the product runs as (the baseline always runs as admin).
    pub product_user: &'static str,
    pub baseline_cap: Option<Duration>,
}

/// A finished run: the measurement, the server's request log, and what the
/// checks found wrong (empty when the run did what it should).
pub struct Run {
    pub measured: Measured,
    pub requests: Vec<RecordedRequest>,
    pub problems: Vec<String>,
    /// For the baseline: how many candidates it had toggled when it stopped.
    pub toggled: usize,
}

/// Runs `tool` once on a freshly generated and seeded cluster for `case` (the
/// generator stamps its times from the clock, so every run gets its own).
pub fn run(setup: &Setup, case: &Case, tool: Tool, n: usize) -> Result<Run> {
    let mut seed = generate::cluster(&ClusterSpec {
        helmreleases: case.helmreleases,
        namespaces: case.namespaces,
        stuck_pending_install: case.pending_install,
        stuck_deployed_unknown: case.deployed_unknown,
        stuck_for: chrono::Duration::minutes(10),
        seed: 6,
    });
    if case.depends_on {
        crate::cases::add_depends_on(&mut seed);
    }
    let server = FakeApiServer::start(
        ServerConfig::new()
            .rbac_dir(&setup.rbac_dir)
            .service_account("flux-system", "stuck-hr-recovery"),
    )
    .context("starting the fake API server")?;
    server
        .apply_all(seed)
        .context("seeding the fake API server")?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let kubeconfig = tmp.path().join("kubeconfig");
    let user = match tool {
        Tool::Ours | Tool::PagedGet => setup.product_user,
        Tool::Baseline => ADMIN_USER,
    };
    server
        .write_kubeconfig(&kubeconfig, user)
        .context("writing the kubeconfig")?;
    server.clear_requests();

    let label = format!(
        "{}-{}-{n}",
        case.id,
        match tool {
            Tool::Ours => "ours",
            Tool::Baseline => "baseline",
            Tool::PagedGet => "paged-get",
        }
    );
    let (cmd, cap) = match tool {
        Tool::Ours => (product_command(setup, case, &kubeconfig), None),
        Tool::Baseline => (
            baseline_command(setup, &kubeconfig, tmp.path()),
            setup.baseline_cap,
        ),
        Tool::PagedGet => (paged_get_command(&kubeconfig)?, None),
    };
    let measured = child::run(&cmd, &label, &setup.log_dir, cap)?;
    let requests = server.requests();
    let helmreleases = server.helmreleases();
    drop(server);

    let mut problems = Vec::new();
    let mut toggled = 0;
    match tool {
        Tool::Ours => {
            check_report(case, &measured, &mut problems);
            if !case.dry_run {
                problems.extend(requests::violations(case, &requests));
            }
        }
        Tool::PagedGet => {
            let want = format!("items={}", case.helmreleases);
            if measured.exit_code != 0 || measured.stdout.lines().last() != Some(want.as_str()) {
                problems.push(format!(
                    "exit {}, summary {:?}, expected {want:?}",
                    measured.exit_code,
                    measured.stdout.lines().last()
                ));
            }
        }
        Tool::Baseline => {
            toggled = measured
                .stdout
                .lines()
                .filter(|l| l.ends_with(" toggled"))
                .count();
            if !measured.killed_at_cap {
                check_baseline(case, &measured, &requests, &mut problems);
            }
        }
    }
    if !measured.killed_at_cap {
        check_none_suspended(&helmreleases, &mut problems);
    }
    let stderr_log = setup.log_dir.join(format!("{label}.stderr"));
    for p in &mut problems {
        *p = format!("{label}: {p} (stderr: {})", stderr_log.display());
    }
    Ok(Run {
        measured,
        requests,
        problems,
        toggled,
    })
}

fn product_command(setup: &Setup, case: &Case, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(&setup.product);
    cmd.args(["--max-actions", &case.max_actions.to_string()])
        .args(["--suspend-wait", case.suspend_wait])
        .args(["--output", "json"])
        .env("KUBECONFIG", kubeconfig);
    if case.dry_run {
        cmd.arg("--dry-run");
    }
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STUCK_HR_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn paged_get_command(kubeconfig: &Path) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the bench binary")?);
    cmd.arg(crate::paged::PAGED_GET)
        .env("KUBECONFIG", kubeconfig);
    Ok(cmd)
}

fn baseline_command(setup: &Setup, kubeconfig: &Path, home: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(&setup.baseline)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env_remove("STUCK_THRESHOLD_SECONDS");
    if let Some(k) = &setup.kubectl {
        cmd.env("KUBECTL", k);
    }
    cmd
}

/// The product's JSON report must account for every HelmRelease and action.
fn check_report(case: &Case, m: &Measured, problems: &mut Vec<String>) {
    let want_exit = if case.guardrail_trips() { 1 } else { 0 };
    if m.exit_code != want_exit {
        problems.push(format!("exit code {}, expected {want_exit}", m.exit_code));
    }
    let report: Value = match serde_json::from_str(&m.stdout) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("report is not JSON: {e}"));
            return;
        }
    };
    if case.depends_on {
        let blocking = ["actions", "skipped"]
            .iter()
            .filter_map(|list| report[*list].as_array())
            .flatten()
            .filter(|i| i["blocks"].as_array().is_some_and(|b| !b.is_empty()))
            .count();
        if blocking == 0 {
            problems.push("no action or skip lists what it blocks".to_string());
        }
    }
    let stuck = case.stuck();
    let acted = if case.guardrail_trips() || case.dry_run {
        0
    } else {
        stuck
    };
    for (field, want) in [
        ("scanned", case.helmreleases),
        ("stuck", stuck),
        ("planned", stuck),
        ("acted", acted),
        ("failed", 0),
    ] {
        let got = report["counts"][field].as_u64();
        if got != Some(want as u64) {
            problems.push(format!("report counts.{field} = {got:?}, expected {want}"));
        }
    }
}

/// The baseline must have toggled every stuck HelmRelease (it cannot tell the
/// two modes apart), with two merge patches each.
fn check_baseline(case: &Case, m: &Measured, reqs: &[RecordedRequest], problems: &mut Vec<String>) {
    if m.exit_code != 0 {
        problems.push(format!("exit code {}", m.exit_code));
    }
    let want = format!(
        "scanned={} stuck={} candidates={} toggled={} failed=0",
        case.helmreleases,
        case.stuck(),
        case.stuck(),
        case.stuck()
    );
    if m.stdout.lines().last() != Some(want.as_str()) {
        problems.push(format!(
            "summary {:?}, expected {want:?}",
            m.stdout.lines().last()
        ));
    }
    let patches = reqs.iter().filter(|r| r.verb == "patch").count();
    if patches != 2 * case.stuck() {
        problems.push(format!("{patches} patches, expected {}", 2 * case.stuck()));
    }
}

/// Neither tool may leave a HelmRelease suspended.
fn check_none_suspended(helmreleases: &[Value], problems: &mut Vec<String>) {
    let suspended = helmreleases
        .iter()
        .filter(|hr| hr["spec"]["suspend"] == Value::Bool(true))
        .count();
    if suspended > 0 {
        problems.push(format!("{suspended} HelmReleases left suspended"));
    }
}
