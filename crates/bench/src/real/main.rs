//! `bench-real`: what listing 10 000 HelmReleases costs on a real
//! kube-apiserver and etcd (issue 19, point 9). Run through
//! `scripts/bench-real`.
//!
//! It starts the testbed without controllers (`testbed::Options::apiserver_only`,
//! no audit log: every request the apiserver serves is a measured client's),
//! seeds `--namespaces` namespaces with `--hrs` healthy HelmReleases (a
//! realistic spec with a values block, a Ready=True status with a history
//! entry), applies `rbac/` and takes the product's ServiceAccount token. Then,
//! `--runs` times each, it measures three clients as that ServiceAccount:
//!
//! * `stuck-hr-recovery --dry-run -o json` (the release build);
//! * `kubectl get hr -A -o json` (the fixed kubectl 1.33, discovery cache warm);
//! * a bare keep-alive paged GET of the same pages, in several list-option
//!   variants (this binary re-executed as `__bare-get`).
//!
//! For every run: wall time, the client's CPU and peak RSS (through the
//! measuring helper of `../child.rs`), the CPU the kube-apiserver and etcd
//! processes spent meanwhile (their `/proc/<pid>/stat` utime + stime), and the
//! requests the apiserver counted (`apiserver_request_total` from `/metrics`,
//! by verb and resource). Prints a markdown report.

#[path = "../child.rs"]
mod child;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, PatchParams, PostParams};
use serde_json::{Value, json};

/// First argument that turns the binary into the bare paged GET client.
const BARE_GET: &str = "__bare-get";
const SA_NAMESPACE: &str = "flux-system";
const SA_NAME: &str = "stuck-hr-recovery";
const HR_API: &str = "helm.toolkit.fluxcd.io/v2";

#[derive(Parser, Debug)]
#[command(
    name = "bench-real",
    about = "List cost on a real kube-apiserver + etcd"
)]
struct Args {
    /// HelmReleases to seed.
    #[arg(long, default_value_t = 10_000)]
    hrs: usize,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 500)]
    namespaces: usize,
    /// Measured runs per client (after one warm-up run each).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The product binary (a release build).
    #[arg(long, default_value = "target/release/stuck-hr-recovery")]
    product: PathBuf,
    /// Where per-run logs go.
    #[arg(long, default_value = "target/bench-real/logs")]
    log_dir: PathBuf,
}

fn main() -> Result<()> {
    let mut argv = std::env::args_os();
    match argv.nth(1) {
        Some(a) if a == child::MEASURE => {
            return child::measure_main(argv.collect());
        }
        Some(a) if a == BARE_GET => {
            return bare_get_main(argv.collect());
        }
        _ => {}
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

/// One client the bench measures.
struct Client {
    label: &'static str,
    what: String,
    command: Command,
}

/// Totals of one measured run.
#[derive(Default, Clone)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    rss_kib: u64,
    apiserver_cpu: Duration,
    etcd_cpu: Duration,
    requests: BTreeMap<String, u64>,
}

async fn bench(args: Args) -> Result<()> {
    let product = std::fs::canonicalize(&args.product).with_context(|| {
        format!(
            "{}: build it first (cargo build --release -p stuck-hr-recovery)",
            args.product.display()
        )
    })?;
    std::fs::create_dir_all(&args.log_dir)?;
    let options = testbed::Options {
        audit: false,
        ..testbed::Options::apiserver_only()
    };
    let started = Instant::now();
    let bed = testbed::Testbed::start(options).await?;
    eprintln!(
        "testbed up in {:.1}s at {}",
        started.elapsed().as_secs_f64(),
        bed.apiserver_url()
    );
    let sa = service_account(&bed).await?;
    let seeded = Instant::now();
    seed(&bed, args.hrs, args.namespaces).await?;
    eprintln!(
        "seeded {} HelmReleases in {} namespaces in {:.1}s",
        args.hrs,
        args.namespaces,
        seeded.elapsed().as_secs_f64()
    );
    let pids: BTreeMap<String, u32> = bed.pids().into_iter().collect();
    let apiserver_pid = *pids
        .get("kube-apiserver")
        .context("no kube-apiserver pid")?;
    let etcd_pid = *pids.get("etcd").context("no etcd pid")?;

    let kubectl_cache = bed.path().join("bench-kubectl-cache");
    let mut clients = vec![Client {
        label: "ours",
        what: "`stuck-hr-recovery --dry-run -o json` (release build)".into(),
        command: {
            let mut c = Command::new(&product);
            c.args(["--dry-run", "-o", "json"])
                .env("KUBECONFIG", &sa.kubeconfig)
                .env("HOME", bed.path())
                .env("RUST_LOG", "warn");
            for (k, _) in std::env::vars() {
                if k.starts_with("STUCK_HR_") {
                    c.env_remove(k);
                }
            }
            c
        },
    }];
    clients.push(Client {
        label: "kubectl",
        what: "`kubectl get hr -A -o json` (kubectl 1.33, discovery cache warm)".into(),
        command: {
            let mut c = Command::new(testbed::tools::kubectl()?);
            c.args([
                "get",
                "helmreleases.helm.toolkit.fluxcd.io",
                "-A",
                "-o",
                "json",
            ])
            .arg("--kubeconfig")
            .arg(&sa.kubeconfig)
            .arg("--cache-dir")
            .arg(&kubectl_cache)
            .env_remove("KUBECONFIG")
            .env("HOME", bed.path());
            c
        },
    });
    for (label, query, what) in BARE_VARIANTS {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg(BARE_GET)
            .arg(bed.apiserver_url())
            .arg(&sa.token)
            .arg(&bed.pki().ca_cert)
            .arg(query);
        clients.push(Client {
            label,
            what: (*what).to_owned(),
            command: c,
        });
    }

    let floor = child::run(&Command::new("/bin/true"), "floor", &args.log_dir, None)?;
    let mut results: Vec<(String, String, Vec<Sample>)> = Vec::new();
    for client in &clients {
        // One warm-up (connection set-up, kubectl discovery, page cache).
        measure(
            &bed,
            client,
            "warmup",
            &args.log_dir,
            apiserver_pid,
            etcd_pid,
            args.hrs,
        )
        .await?;
        let mut samples = Vec::new();
        for run in 0..args.runs {
            let sample = measure(
                &bed,
                client,
                &format!("run{run}"),
                &args.log_dir,
                apiserver_pid,
                etcd_pid,
                args.hrs,
            )
            .await?;
            samples.push(sample);
        }
        results.push((client.label.to_owned(), client.what.clone(), samples));
    }
    report(&args, &results, floor.max_rss_kib);
    drop(bed);
    Ok(())
}

/// The list options a bare GET sends: (label, query, description).
const BARE_VARIANTS: &[(&str, &str, &str)] = &[
    (
        "bare-limit500",
        "limit=500",
        "bare paged GET, `limit=500`, no `resourceVersion` (a consistent list: what ours sends)",
    ),
    (
        "bare-limit500-rv0",
        "limit=500&resourceVersion=0",
        "bare GET, `limit=500&resourceVersion=0` (any freshness, from the watch cache)",
    ),
    (
        "bare-nolimit",
        "",
        "bare GET, one unpaged consistent list (what kubectl sends with `--chunk-size=0`)",
    ),
];

async fn measure(
    bed: &testbed::Testbed,
    client: &Client,
    run: &str,
    log_dir: &Path,
    apiserver_pid: u32,
    etcd_pid: u32,
    hrs: usize,
) -> Result<Sample> {
    let before_requests = request_counts(bed).await?;
    let before_api = process_cpu(apiserver_pid)?;
    let before_etcd = process_cpu(etcd_pid)?;
    let label = format!("{}-{run}", client.label);
    let measured = child::run(
        &client.command,
        &label,
        log_dir,
        Some(Duration::from_secs(300)),
    )?;
    let api = process_cpu(apiserver_pid)? - before_api;
    let etcd = process_cpu(etcd_pid)? - before_etcd;
    let after_requests = request_counts(bed).await?;
    if measured.killed_at_cap {
        bail!("{label} still ran after 300 s and was stopped");
    }
    check_output(client.label, &measured.stdout, hrs).with_context(|| label.clone())?;
    if measured.exit_code != 0 {
        bail!(
            "{label} exited {}; see {}",
            measured.exit_code,
            log_dir.join(format!("{label}.stderr")).display()
        );
    }
    let mut requests = BTreeMap::new();
    for (key, after) in after_requests {
        let delta = after - before_requests.get(&key).copied().unwrap_or(0);
        if delta > 0 {
            requests.insert(key, delta);
        }
    }
    Ok(Sample {
        wall: measured.wall,
        cpu: measured.cpu,
        rss_kib: measured.max_rss_kib,
        apiserver_cpu: api,
        etcd_cpu: etcd,
        requests,
    })
}

/// Each client saw every HelmRelease: the product's report scanned them
/// all, kubectl printed them all, a paged bare GET read every page.
fn check_output(label: &str, stdout: &str, hrs: usize) -> Result<()> {
    match label {
        "ours" => {
            let report: Value = serde_json::from_str(stdout).context("the report is JSON")?;
            let scanned = report["counts"]["scanned"].as_u64().unwrap_or(0);
            if scanned != hrs as u64 {
                bail!("scanned {scanned}, want {hrs}");
            }
        }
        "kubectl" => {
            let list: Value = serde_json::from_str(stdout).context("kubectl printed JSON")?;
            let n = list["items"].as_array().map_or(0, Vec::len);
            if n != hrs {
                bail!("kubectl listed {n}, want {hrs}");
            }
        }
        _ => {
            let pages: usize = stdout.trim().parse().context("page count")?;
            if pages == 0 {
                bail!("no page read");
            }
        }
    }
    Ok(())
}

/// utime + stime of a process, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or(&stat);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, utime 14, stime 15.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("tick count")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let total = ticks(14)? + ticks(15)?;
    Ok(Duration::from_micros(total * 1_000_000 / hz.max(1)))
}

/// The resources a measured client may touch.
const MEASURED_RESOURCES: &[&str] = &["helmreleases", "secrets", "events"];

/// `apiserver_request_total` summed by `VERB resource` (the scrape itself is
/// a non-resource GET and is left out).
async fn request_counts(bed: &testbed::Testbed) -> Result<BTreeMap<String, u64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = bed.client().request_text(request).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let resource = label("resource");
        // What a client of ours can cause; the apiserver's own lease and
        // endpoint upkeep runs beside every measurement and is left out.
        if !MEASURED_RESOURCES.contains(&resource.as_str()) {
            continue;
        }
        let key = format!("{} {}", label("verb"), resource);
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        *counts.entry(key).or_insert(0) += n as u64;
    }
    Ok(counts)
}

async fn service_account(bed: &testbed::Testbed) -> Result<testbed::ServiceAccountAccess> {
    bed.ensure_namespace(SA_NAMESPACE).await?;
    let rbac = testbed::tools::repo_root().join("rbac");
    let output = bed
        .kubectl()?
        .args(["apply", "-f"])
        .arg(&rbac)
        .output()
        .context("kubectl apply -f rbac/")?;
    if !output.status.success() {
        bail!(
            "kubectl apply -f rbac/: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    bed.service_account(SA_NAMESPACE, SA_NAME).await
}

/// `namespaces` namespaces, `hrs` healthy HelmReleases spread over them.
async fn seed(bed: &testbed::Testbed, hrs: usize, namespaces: usize) -> Result<()> {
    let names: Vec<String> = (0..namespaces).map(|i| format!("team-{i:03}")).collect();
    futures::stream::iter(names.iter())
        .map(|ns| bed.ensure_namespace(ns))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let resource = bed.resource(HR_API, "HelmRelease").await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    futures::stream::iter(0..hrs)
        .map(|i| {
            let ns = names[i % namespaces].clone();
            let name = format!("app-{i:05}");
            let api: kube::Api<DynamicObject> =
                kube::Api::namespaced_with(bed.client(), &ns, &resource);
            let now = now.clone();
            async move {
                let object: DynamicObject = serde_json::from_value(hr(&ns, &name))?;
                let created = api.create(&PostParams::default(), &object).await?;
                let generation = created.metadata.generation.unwrap_or(1);
                let status = json!({"status": healthy_status(&ns, &name, generation, &now)});
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &kube::api::Patch::Merge(&status),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn hr(ns: &str, name: &str) -> Value {
    // A spec of the size users write: chart, interval, install/upgrade
    // settings and a values block (which the product never reads).
    let values: serde_json::Map<String, Value> = (0..20)
        .map(|i| {
            (
                format!("setting{i:02}"),
                json!({"enabled": true, "replicas": 2, "image": format!("registry.example/{name}/component-{i}:1.2.3")}),
            )
        })
        .collect();
    json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"namespace": ns, "name": name, "labels": {"team": ns}},
        "spec": {
            "interval": "10m",
            "chart": {"spec": {
                "chart": name,
                "version": "1.2.3",
                "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux-system"}
            }},
            "install": {"remediation": {"retries": 3}},
            "upgrade": {"remediation": {"retries": 3}},
            "values": values
        }
    })
}

fn healthy_status(ns: &str, name: &str, generation: i64, now: &str) -> Value {
    json!({
        "observedGeneration": generation,
        "lastAttemptedGeneration": generation,
        "lastAttemptedRevision": "1.2.3",
        "lastAttemptedConfigDigest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "lastAttemptedReleaseAction": "install",
        "helmChart": format!("flux-system/{ns}-{name}"),
        "storageNamespace": ns,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "InstallSucceeded",
             "message": format!("Helm install succeeded for release {ns}/{name}.v1 with chart {name}@1.2.3"),
             "lastTransitionTime": now, "observedGeneration": generation},
            {"type": "Released", "status": "True", "reason": "InstallSucceeded",
             "message": format!("Helm install succeeded for release {ns}/{name}.v1 with chart {name}@1.2.3"),
             "lastTransitionTime": now, "observedGeneration": generation}
        ],
        "history": [{
            "name": name, "namespace": ns, "version": 1, "status": "deployed",
            "chartName": name, "chartVersion": "1.2.3", "appVersion": "1.2.3",
            "configDigest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "firstDeployed": now, "lastDeployed": now, "action": "install"
        }]
    })
}

/// `bench-real __bare-get <apiserver url> <token> <ca.crt> <query>`: GETs
/// every page of the HelmRelease list with one keep-alive client and reads
/// only each page's `metadata.continue`.
fn bare_get_main(args: Vec<OsString>) -> Result<()> {
    let [url, token, ca, query] = &args[..] else {
        bail!("usage: bench-real {BARE_GET} <url> <token> <ca.crt> <query>");
    };
    let url: http::Uri = url.to_string_lossy().parse()?;
    let token = token.to_string_lossy().into_owned();
    let ca_pem = std::fs::read(ca).context("reading the CA")?;
    let query = query.to_string_lossy().into_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut config = kube::Config::new(url);
        config.root_cert = Some(pem_certs(&ca_pem)?);
        config.auth_info.token = Some(token.into());
        let client = kube::Client::try_from(config)?;
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default, rename = "continue")]
            continue_: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Page {
            metadata: Meta,
        }
        let mut token: Option<String> = None;
        let mut pages = 0usize;
        loop {
            let mut q = query.clone();
            if let Some(t) = &token {
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str("continue=");
                q.push_str(&form_encode(t));
            }
            let path = format!("/apis/helm.toolkit.fluxcd.io/v2/helmreleases?{q}");
            let request = http::Request::get(path).body(Vec::new())?;
            let body = client.request_text(request).await?;
            let page: Page = serde_json::from_str(&body)?;
            pages += 1;
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        println!("{pages}");
        anyhow::Ok(())
    })
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The DER certificates of a PEM bundle.
fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(pem).context("CA is not UTF-8 PEM")?;
    let mut out = Vec::new();
    let mut inside = false;
    let mut b64 = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            b64.clear();
        } else if line.starts_with("-----END CERTIFICATE") {
            inside = false;
            use base64::Engine;
            out.push(base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())?);
        } else if inside {
            b64.push_str(line.trim());
        }
    }
    if out.is_empty() {
        bail!("no certificate in the CA file");
    }
    Ok(out)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn report(args: &Args, results: &[(String, String, Vec<Sample>)], floor_kib: u64) {
    println!("## A real kube-apiserver v1.36.3 + etcd v3.6 (issue 19, point 9)");
    println!();
    println!(
        "{} HelmReleases in {} namespaces, each client as the product's ServiceAccount (the RBAC authorizer on), \
         {} measured runs after one warm-up; medians. Client CPU and peak RSS through the measuring helper \
         (its floor, `/bin/true`: {} KiB); apiserver and etcd CPU from their `/proc/<pid>/stat` over the run; \
         requests as the apiserver counted them (`apiserver_request_total`).",
        args.hrs, args.namespaces, args.runs, floor_kib
    );
    println!();
    println!(
        "| client | wall | client CPU | peak RSS | kube-apiserver CPU | etcd CPU | requests (per run) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, what, samples) in results {
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let api = median(samples.iter().map(|s| s.apiserver_cpu).collect());
        let etcd = median(samples.iter().map(|s| s.etcd_cpu).collect());
        let rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let requests = samples
            .last()
            .map(|s| {
                s.requests
                    .iter()
                    .map(|(k, v)| format!("{v}× {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "| **{label}**: {what} | {:.2} s | {:.2} s | {:.1} MiB | {:.2} s | {:.2} s | {requests} |",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            rss as f64 / 1024.0,
            api.as_secs_f64(),
            etcd.as_secs_f64(),
        );
    }
}
