//! Command line of the `fake-apiserver` binary.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use fake_apiserver::generate::{self, ClusterSpec};
use fake_apiserver::{FakeApiServer, ServerConfig, faults};

#[derive(Debug, Parser)]
#[command(
    name = "fake-apiserver",
    about = "A fake Kubernetes API server for tests, demos and benchmarks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve until SIGTERM/SIGINT; prints the URL on stdout.
    Serve(Serve),
}

#[derive(Debug, clap::Args)]
pub struct Serve {
    /// Seed objects from a YAML/JSON file (multi-document, `kind: List`); repeatable.
    #[arg(long = "seed", value_name = "FILE")]
    pub seed: Vec<PathBuf>,
    /// Generate HelmReleases: helmreleases=N,namespaces=M,pending-install=A,deployed-unknown=B[,stuck-for-secs=S][,seed=X]
    #[arg(long, value_name = "SPEC")]
    pub generate: Option<String>,
    /// Load RBAC from this directory and enforce it for non-admin users.
    #[arg(long, value_name = "DIR")]
    pub rbac_dir: Option<PathBuf>,
    /// Add a service-account token user NS/NAME; repeatable.
    #[arg(long = "service-account", value_name = "NS/NAME")]
    pub service_accounts: Vec<String>,
    /// Validate HelmReleases against this CRD file instead of the shared one.
    #[arg(long, value_name = "FILE")]
    pub crd_file: Option<PathBuf>,
    /// Write a kubeconfig for --kubeconfig-user here.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig_out: Option<PathBuf>,
    #[arg(long, value_name = "USER", default_value = "admin")]
    pub kubeconfig_user: String,
    /// Faults to inject (YAML list, see docs/fake-apiserver.md).
    #[arg(long, value_name = "FAULTS.yaml")]
    pub scenario: Option<PathBuf>,
    /// Append every request as a JSON line here.
    #[arg(long, value_name = "PATH")]
    pub request_log: Option<PathBuf>,
    /// Written once listening; contains the URL.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Server-side cap on list `limit`.
    #[arg(long, value_name = "N")]
    pub page_size_cap: Option<usize>,
    /// Run the helm-controller model (docs/fake-apiserver.md): every PERIOD
    /// milliseconds, reconcile what its watch and requeues deliver; each
    /// reconcile that writes, or that a watch event caused, is logged on
    /// stderr. The seeded objects count as already handled.
    #[arg(long, value_name = "PERIOD_MS", num_args = 0..=1, default_missing_value = "300")]
    pub helm_controller: Option<u64>,
}

/// Parses `helmreleases=N,namespaces=M,pending-install=A,deployed-unknown=B,...`.
pub fn parse_generate(text: &str) -> anyhow::Result<ClusterSpec> {
    let mut spec = ClusterSpec::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value, got {part:?}"))?;
        let n: u64 = v
            .trim()
            .parse()
            .with_context(|| format!("{k}: not a whole number: {v:?}"))?;
        match k.trim() {
            "helmreleases" => spec.helmreleases = n as usize,
            "namespaces" => spec.namespaces = n as usize,
            "pending-install" => spec.stuck_pending_install = n as usize,
            "deployed-unknown" => spec.stuck_deployed_unknown = n as usize,
            "stuck-for-secs" => spec.stuck_for = chrono::Duration::seconds(n as i64),
            "seed" => spec.seed = n,
            other => bail!("unknown --generate key {other:?}"),
        }
    }
    Ok(spec)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Serve(args) = cli.command;
    let mut config = ServerConfig::new();
    if let Some(crd) = &args.crd_file {
        config = config.crd_file(crd);
    }
    if let Some(dir) = &args.rbac_dir {
        config = config.rbac_dir(dir);
    }
    for sa in &args.service_accounts {
        let (ns, name) = sa
            .split_once('/')
            .ok_or_else(|| anyhow!("--service-account wants NS/NAME, got {sa:?}"))?;
        config = config.service_account(ns, name);
    }
    if let Some(n) = args.page_size_cap {
        config = config.page_size_cap(n);
    }
    let generated = args.generate.as_deref().map(parse_generate).transpose()?;
    let faults = args
        .scenario
        .as_deref()
        .map(faults::load_scenario)
        .transpose()?
        .unwrap_or_default();

    let server = FakeApiServer::start(config)?;
    for f in &args.seed {
        server.apply_file(f)?;
    }
    if let Some(spec) = &generated {
        server.apply_all(generate::cluster(spec))?;
    }
    for f in faults {
        server.add_fault(f);
    }
    if let Some(path) = &args.request_log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening request log {}", path.display()))?;
        server.set_request_sink(Box::new(file));
    }
    if let Some(path) = &args.kubeconfig_out {
        if server.token(&args.kubeconfig_user).is_none() {
            bail!(
                "--kubeconfig-user {:?} is not a user of this server (admin, a --service-account, or a ServiceAccount in --rbac-dir)",
                args.kubeconfig_user
            );
        }
        server.write_kubeconfig(path, &args.kubeconfig_user)?;
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{}\n", server.url()))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    println!("{}", server.url());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let Some(period) = args.helm_controller {
            let (server, stop) = (&server, &stop);
            scope.spawn(move || helm_controller(server, period, stop));
        }
        let waited = wait_for_signal();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        waited
    })?;
    drop(server);
    Ok(())
}

/// The helm-controller model's loop for `--helm-controller`.
fn helm_controller(server: &FakeApiServer, period_ms: u64, stop: &std::sync::atomic::AtomicBool) {
    use fake_apiserver::controller::{HelmControllerModel, Trigger};
    // Requeues after about 1.5 s, however short the period.
    let passes = (1500 / period_ms.max(1)).saturating_sub(1) as u32;
    let mut model = HelmControllerModel::with_requeue_passes(passes);
    model.mark_handled(server);
    // What was last logged per object: a requeue is logged only when its
    // outcome or Ready changes.
    let mut logged = std::collections::BTreeMap::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(period_ms));
        for r in model.reconcile_triggered(server) {
            let line = format!(
                "{:?}, {}",
                r.outcome,
                ready_of(server, &r.namespace, &r.name)
            );
            let key = (r.namespace.clone(), r.name.clone());
            if r.trigger == Trigger::Requeue && logged.get(&key) == Some(&line) {
                continue;
            }
            let written = if r.wrote { "" } else { " (nothing written)" };
            eprintln!(
                "helm-controller model: reconciled {}/{} on {:?}: {line}{written}",
                r.namespace, r.name, r.trigger
            );
            logged.insert(key, line);
        }
    }
}

/// `Ready=<status> (<reason>)` of a HelmRelease, for the model's log.
fn ready_of(server: &FakeApiServer, ns: &str, name: &str) -> String {
    server
        .helmrelease(ns, name)
        .and_then(|hr| {
            let cs = hr["status"]["conditions"].as_array()?.clone();
            let c = cs.into_iter().find(|c| c["type"] == "Ready")?;
            Some(format!(
                "Ready={} ({})",
                c["status"].as_str()?,
                c["reason"].as_str()?
            ))
        })
        .unwrap_or_else(|| "no Ready".into())
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn generate_spec_is_parsed() {
        let s = parse_generate("helmreleases=10,namespaces=2,pending-install=1,deployed-unknown=3")
            .unwrap();
        assert_eq!(
            (
                s.helmreleases,
                s.namespaces,
                s.stuck_pending_install,
                s.stuck_deployed_unknown
            ),
            (10, 2, 1, 3)
        );
        assert!(parse_generate("bogus=1").is_err());
    }
}
