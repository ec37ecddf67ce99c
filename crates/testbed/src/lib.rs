//! A real cluster for tests, on loopback, in a fresh temporary directory:
//! etcd, kube-apiserver (TLS with a CA of ours, the RBAC authorizer, an
//! admin token, ServiceAccount tokens by TokenRequest), the Flux CRDs of the
//! chosen versions, a chart repository served over HTTP, source-controller
//! and one helm-controller version.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let bed = testbed::Testbed::start(testbed::Options::default()).await?;
//! let sa = bed.service_account("flux-system", "stuck-hr-recovery").await?;
//! // ... run things with bed.admin_kubeconfig() or sa.kubeconfig ...
//! drop(bed); // stops every process, removes the directory
//! # Ok(()) }
//! ```
//!
//! Guarantees: every process is in its own process group and dies with
//! this process (`PR_SET_PDEATHSIG`); dropping the [`Testbed`] (also while a
//! test panics) stops them all (SIGTERM, SIGKILL after a grace), waits for
//! them and removes the directory. Waits poll a condition with a deadline
//! and, on timeout, say what they saw last and print the tail of every
//! process log. A missing binary is an error naming `scripts/build-testbed`.

pub mod charts;
pub mod pki;
pub mod process;
pub mod tools;
pub mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::pki::Pki;
use crate::process::Proc;
use crate::util::{PortReservation, http_get, random_token, reserve_port, write_kubeconfig};

/// The helm-controller versions `scripts/build-testbed` builds.
pub const HELM_CONTROLLER_VERSIONS: &[&str] = &["v1.4.3", "v1.6.3", "v1.6.4"];
/// The newest of them; `TESTBED_HELM_CONTROLLER` overrides the default.
pub const DEFAULT_HELM_CONTROLLER: &str = "v1.6.4";
/// The admin user (in `system:masters`: bypasses RBAC).
pub const ADMIN_USER: &str = "testbed-admin";

/// How long each start-up wait may take (2 shared cores: generous).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Between two probes of a wait.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// SIGTERM → SIGKILL grace when stopping.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// helm-controller version (`v1.6.4`): its HelmRelease CRD is applied,
    /// and its binary `helm-controller-<version>` runs when
    /// `run_helm_controller`.
    pub helm_controller: String,
    pub run_helm_controller: bool,
    pub run_source_controller: bool,
    /// Package `testbed/charts/*` and serve them (needed by source-controller
    /// for HelmRepository-based HelmReleases).
    pub chart_repo: bool,
    /// The apiserver URL written into helm-controller's kubeconfig (a fault
    /// proxy in front of the apiserver); the apiserver itself by default.
    pub helm_controller_apiserver: Option<String>,
    /// Write an audit log (`audit.log`: writes with their bodies, other
    /// requests at Metadata) — see
    /// [`Testbed::audit_events`].
    pub audit: bool,
    /// Create the testbed directory under this one instead of the system
    /// temp dir (scripts/testbed up).
    pub parent_dir: Option<PathBuf>,
}

impl Default for Options {
    /// Everything: CRDs, chart repository, source-controller and
    /// helm-controller (`TESTBED_HELM_CONTROLLER` or the newest), audit log.
    fn default() -> Self {
        Options {
            helm_controller: default_helm_controller(),
            run_helm_controller: true,
            run_source_controller: true,
            chart_repo: true,
            helm_controller_apiserver: None,
            audit: true,
            parent_dir: None,
        }
    }
}

impl Options {
    /// etcd, kube-apiserver and the CRDs only — no controller writes to any
    /// object, so every change is a test's own.
    pub fn apiserver_only() -> Self {
        Options {
            run_helm_controller: false,
            run_source_controller: false,
            chart_repo: false,
            ..Options::default()
        }
    }

    pub fn helm_controller(mut self, version: &str) -> Self {
        self.helm_controller = version.to_owned();
        self
    }
}

/// `TESTBED_HELM_CONTROLLER` or [`DEFAULT_HELM_CONTROLLER`].
pub fn default_helm_controller() -> String {
    std::env::var("TESTBED_HELM_CONTROLLER")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_HELM_CONTROLLER.to_owned())
}

/// A ServiceAccount's credentials: its TokenRequest token and a kubeconfig.
#[derive(Debug, Clone)]
pub struct ServiceAccountAccess {
    /// `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    pub token: String,
    pub kubeconfig: PathBuf,
}

/// Timings of a start, for reports.
#[derive(Debug, Clone, Default)]
pub struct StartTimings {
    pub etcd: Duration,
    pub apiserver: Duration,
    pub crds: Duration,
    pub chart_repo: Duration,
    pub source_controller: Duration,
    pub helm_controller: Duration,
    pub total: Duration,
}

struct HelmControllerSlot {
    proc: Option<Proc>,
    metrics_port: u16,
    health_port: u16,
    apiserver: String,
}

/// A running testbed. Dropping it stops everything.
pub struct Testbed {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    options: Options,
    pki: Pki,
    apiserver_url: String,
    admin_token: String,
    admin_kubeconfig: PathBuf,
    client: Client,
    /// etcd, kube-apiserver, chart server, source-controller — in start order.
    procs: Mutex<Vec<Proc>>,
    helm_controller: Mutex<HelmControllerSlot>,
    chart_repo_url: Option<String>,
    source_storage_url: Option<String>,
    notes: Vec<String>,
    timings: StartTimings,
    resources: Mutex<HashMap<(String, String), ApiResource>>,
    kubectl_cache: PathBuf,
    /// Every port this testbed uses, reserved until it is dropped.
    ports: Mutex<Vec<PortReservation>>,
}

impl Testbed {
    /// Starts what `options` asks for and waits until each is ready.
    pub async fn start(options: Options) -> anyhow::Result<Testbed> {
        let t0 = Instant::now();
        // Every binary first: a missing one fails before anything starts.
        let etcd_bin = tools::go_binary("etcd")?;
        let apiserver_bin = tools::go_binary("kube-apiserver")?;
        let hc_name = format!("helm-controller-{}", options.helm_controller);
        let hc_bin = if options.run_helm_controller {
            Some(tools::go_binary(&hc_name)?)
        } else {
            None
        };
        let sc_bin = if options.run_source_controller {
            Some(tools::go_binary("source-controller")?)
        } else {
            None
        };
        if options.chart_repo {
            tools::helm()?;
            tools::python3()?;
        }

        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("testbed-");
            b
        };
        let dir = match &options.parent_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                builder.tempdir_in(parent)
            }
            None => builder.tempdir(),
        }
        .context("creating the testbed directory")?;
        let path = dir.path().to_path_buf();
        std::fs::create_dir_all(path.join("logs"))?;
        let pki = pki::generate(&path.join("pki"))?;
        let admin_token = random_token()?;
        let mut ports = Vec::new();
        let apiserver = reserve_port()?;
        let apiserver_port = apiserver.port;
        ports.push(apiserver);
        let apiserver_url = format!("https://127.0.0.1:{apiserver_port}");
        let admin_kubeconfig = path.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &apiserver_url,
            &pki.ca_pem,
            ADMIN_USER,
            &admin_token,
        )?;
        let client = client_for(&admin_kubeconfig).await?;

        let mut bed = Testbed {
            dir: Some(dir),
            path: path.clone(),
            pki,
            apiserver_url: apiserver_url.clone(),
            admin_token,
            admin_kubeconfig,
            client,
            procs: Mutex::new(Vec::new()),
            helm_controller: Mutex::new(HelmControllerSlot {
                proc: None,
                metrics_port: 0,
                health_port: 0,
                apiserver: options
                    .helm_controller_apiserver
                    .clone()
                    .unwrap_or_else(|| apiserver_url.clone()),
            }),
            chart_repo_url: None,
            source_storage_url: None,
            notes: Vec::new(),
            timings: StartTimings::default(),
            resources: Mutex::new(HashMap::new()),
            kubectl_cache: path.join("kubectl-cache"),
            ports: Mutex::new(ports),
            options,
        };

        let t = Instant::now();
        bed.start_etcd(&etcd_bin).await?;
        bed.timings.etcd = t.elapsed();
        let t = Instant::now();
        bed.start_apiserver(&apiserver_bin, apiserver_port).await?;
        bed.timings.apiserver = t.elapsed();
        let t = Instant::now();
        bed.apply_crds().await?;
        bed.timings.crds = t.elapsed();
        if bed.options.chart_repo {
            let t = Instant::now();
            bed.start_chart_repo().await?;
            bed.timings.chart_repo = t.elapsed();
        }
        if let Some(bin) = sc_bin {
            let t = Instant::now();
            bed.start_source_controller(&bin).await?;
            bed.timings.source_controller = t.elapsed();
        }
        if let Some(bin) = hc_bin {
            let t = Instant::now();
            {
                let mut slot = bed.lock_hc();
                slot.metrics_port = bed.port()?;
                slot.health_port = bed.port()?;
            }
            bed.spawn_helm_controller(&bin)?;
            bed.wait_helm_controller_ready().await?;
            bed.timings.helm_controller = t.elapsed();
        }
        bed.timings.total = t0.elapsed();
        Ok(bed)
    }

    async fn start_etcd(&self, bin: &Path) -> anyhow::Result<()> {
        let client_port = self.port()?;
        let peer_port = self.port()?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--name=testbed".to_owned(),
            format!("--data-dir={}", self.path.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=testbed=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        self.spawn("etcd", cmd)?;
        std::fs::write(
            self.path.join("etcd.url"),
            format!("http://127.0.0.1:{client_port}"),
        )?;
        self.wait_fn("etcd /health", START_TIMEOUT, move || async move {
            match http_get(client_port, "/health").await {
                Ok((200, body)) if body.contains("\"true\"") => Ok(()),
                Ok((status, body)) => Err(format!("{status} {body}")),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn start_apiserver(&self, bin: &Path, port: u16) -> anyhow::Result<()> {
        let etcd = std::fs::read_to_string(self.path.join("etcd.url"))?;
        let tokens = self.path.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{},{ADMIN_USER},testbed-admin-uid,\"system:masters\"\n",
                self.admin_token
            ),
        )?;
        let mut args = vec![
            format!("--etcd-servers={etcd}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", self.pki.serving_cert.display()),
            format!("--tls-private-key-file={}", self.pki.serving_key.display()),
            format!("--cert-dir={}", self.path.join("apiserver-certs").display()),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            format!("--token-auth-file={}", tokens.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", self.pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                self.pki.sa_key.display()
            ),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            "--allow-privileged=true".to_owned(),
            // The `kubernetes` Service cannot point at a loopback address
            // (Endpoints validation); nothing here needs it.
            "--endpoint-reconciler-type=none".to_owned(),
        ];
        if self.options.audit {
            let policy = self.path.join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY)?;
            args.push(format!("--audit-policy-file={}", policy.display()));
            args.push(format!(
                "--audit-log-path={}",
                self.path.join("audit.log").display()
            ));
            args.push("--audit-log-mode=blocking".to_owned());
            args.push("--audit-log-format=json".to_owned());
        }
        let mut cmd = Command::new(bin);
        cmd.args(args);
        self.spawn("kube-apiserver", cmd)?;
        let client = &self.client;
        self.wait_fn(
            "kube-apiserver /readyz",
            START_TIMEOUT,
            move || async move {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client
                    .request_text(req)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )
        .await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let namespaces = &namespaces;
        self.wait_fn("namespace default", START_TIMEOUT, move || async move {
            match namespaces.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not created yet".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// source-controller's CRDs (all of them), then helm-controller's, each
    /// from the version's own directory; the shared fixtures only where
    /// those are missing (noted in [`Testbed::notes`]).
    async fn apply_crds(&mut self) -> anyhow::Result<()> {
        let mut files: Vec<PathBuf> = Vec::new();
        let fixtures = tools::fixture_crd_dir();
        match tools::crd_dir("source-controller") {
            Some(dir) => files.extend(yaml_files(&dir)?),
            None => {
                let note = format!(
                    "no source-controller CRDs under {}; using {} (HelmRepository, OCIRepository only)",
                    tools::tools_dir().join("crds").display(),
                    fixtures.display()
                );
                self.notes.push(note);
                files.push(fixtures.join("source.toolkit.fluxcd.io_helmrepositories.yaml"));
                files.push(fixtures.join("source.toolkit.fluxcd.io_ocirepositories.yaml"));
            }
        }
        let hc = format!("helm-controller-{}", self.options.helm_controller);
        let hc_crd = tools::tools_dir()
            .join("crds")
            .join(&hc)
            .join("helm.toolkit.fluxcd.io_helmreleases.yaml");
        if hc_crd.is_file() {
            files.push(hc_crd);
        } else {
            self.notes.push(format!(
                "{} missing; using {} (helm-controller v1.6.3's)",
                hc_crd.display(),
                fixtures
                    .join("helm.toolkit.fluxcd.io_helmreleases.yaml")
                    .display()
            ));
            files.push(fixtures.join("helm.toolkit.fluxcd.io_helmreleases.yaml"));
        }
        for note in &self.notes {
            eprintln!("testbed: {note}");
        }
        let crds: Api<DynamicObject> = Api::all_with(self.client.clone(), &crd_resource());
        let mut names = Vec::new();
        for file in &files {
            for doc in read_yaml_docs(file)? {
                if doc["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let name = doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let object: DynamicObject = serde_json::from_value(doc)?;
                crds.create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("creating CRD {name} from {}", file.display()))?;
                names.push(name);
            }
        }
        if names.is_empty() {
            bail!("no CRD found in {files:?}");
        }
        let (names, crds) = (&names, &crds);
        self.wait_fn("CRDs Established", START_TIMEOUT, move || async move {
            let mut pending = Vec::new();
            for name in names {
                let crd = crds.get(name).await.map_err(|e| e.to_string())?;
                let established = crd.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                if !established {
                    pending.push(name.clone());
                }
            }
            if pending.is_empty() {
                Ok(())
            } else {
                Err(format!("not Established: {pending:?}"))
            }
        })
        .await
    }

    async fn start_chart_repo(&mut self) -> anyhow::Result<()> {
        let port = self.port()?;
        let url = format!("http://127.0.0.1:{port}");
        let repo = self.path.join("chart-repo");
        let names =
            charts::build_repo(&charts::charts_src(), &repo, &url, &self.path.join("helm"))?;
        if names.is_empty() {
            bail!("no chart under {}", charts::charts_src().display());
        }
        let mut cmd = Command::new(tools::python3()?);
        cmd.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(&repo)
            .arg(port.to_string());
        self.spawn("chart-repo", cmd)?;
        self.wait_fn(
            "chart repository /index.yaml",
            START_TIMEOUT,
            move || async move {
                match http_get(port, "/index.yaml").await {
                    Ok((200, body)) if body.contains("entries:") => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body:.200}")),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        self.chart_repo_url = Some(url);
        Ok(())
    }

    async fn start_source_controller(&mut self, bin: &Path) -> anyhow::Result<()> {
        let storage = self.port()?;
        let metrics = self.port()?;
        let health = self.port()?;
        let kubeconfig = self.path.join("source-controller.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &self.apiserver_url,
            &self.pki.ca_pem,
            ADMIN_USER,
            &self.admin_token,
        )?;
        let home = self.path.join("home/source-controller");
        std::fs::create_dir_all(&home)?;
        // source-controller refuses a storage path that does not exist
        // ("invalid dir path").
        let storage_path = self.path.join("source-storage");
        std::fs::create_dir_all(&storage_path)?;
        let mut cmd = Command::new(bin);
        cmd.args([
            format!(
                "--storage-path={}",
                self.path.join("source-storage").display()
            ),
            format!("--storage-addr=127.0.0.1:{storage}"),
            format!("--storage-adv-addr=127.0.0.1:{storage}"),
            format!("--metrics-addr=127.0.0.1:{metrics}"),
            format!("--health-addr=127.0.0.1:{health}"),
            "--enable-leader-election=false".to_owned(),
            "--log-encoding=console".to_owned(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &home)
        .env("RUNTIME_NAMESPACE", "flux-system");
        self.spawn("source-controller", cmd)?;
        self.wait_fn(
            "source-controller /readyz",
            START_TIMEOUT,
            move || async move {
                match http_get(health, "/readyz").await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body:.200}")),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        self.source_storage_url = Some(format!("http://127.0.0.1:{storage}"));
        Ok(())
    }

    fn spawn_helm_controller(&self, bin: &Path) -> anyhow::Result<()> {
        let mut slot = self.lock_hc();
        let kubeconfig = self.path.join("helm-controller.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &slot.apiserver,
            &self.pki.ca_pem,
            ADMIN_USER,
            &self.admin_token,
        )?;
        let home = self.path.join("home/helm-controller");
        std::fs::create_dir_all(&home)?;
        let mut cmd = Command::new(bin);
        cmd.args([
            format!("--metrics-addr=127.0.0.1:{}", slot.metrics_port),
            format!("--health-addr=127.0.0.1:{}", slot.health_port),
            "--enable-leader-election=false".to_owned(),
            "--requeue-dependency=2s".to_owned(),
            "--log-encoding=console".to_owned(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &home)
        .env("RUNTIME_NAMESPACE", "flux-system");
        let log = self.path.join("logs/helm-controller.log");
        slot.proc = Some(Proc::spawn("helm-controller", cmd, &log)?);
        Ok(())
    }

    async fn wait_helm_controller_ready(&self) -> anyhow::Result<()> {
        let health = self.lock_hc().health_port;
        self.wait_fn(
            "helm-controller /readyz",
            START_TIMEOUT,
            move || async move {
                match http_get(health, "/readyz").await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body:.200}")),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// SIGTERM to helm-controller, SIGKILL after a grace; waits for it.
    pub fn stop_helm_controller(&self) {
        if let Some(mut p) = self.lock_hc().proc.take() {
            p.stop(STOP_GRACE);
        }
    }

    /// SIGKILL to helm-controller (a crash: no graceful shutdown, no lease
    /// release, no status write); waits for it.
    pub fn kill_helm_controller(&self) {
        if let Some(mut p) = self.lock_hc().proc.take() {
            p.kill();
        }
    }

    /// Starts helm-controller again (after a stop or kill), with its
    /// kubeconfig pointing at `apiserver` (a fault proxy) or, for `None`,
    /// where it pointed before; waits until it is ready.
    pub async fn start_helm_controller(&self, apiserver: Option<&str>) -> anyhow::Result<()> {
        if !self.options.run_helm_controller {
            bail!("this testbed was started without helm-controller");
        }
        self.stop_helm_controller();
        if let Some(url) = apiserver {
            self.lock_hc().apiserver = url.to_owned();
        }
        let bin = tools::go_binary(&format!("helm-controller-{}", self.options.helm_controller))?;
        self.spawn_helm_controller(&bin)?;
        self.wait_helm_controller_ready().await
    }

    /// Whether helm-controller is running (started and not exited).
    pub fn helm_controller_running(&self) -> bool {
        self.lock_hc()
            .proc
            .as_mut()
            .is_some_and(|p| p.exited().is_none())
    }

    /// Reserves a loopback port for as long as this testbed lives (see
    /// [`util::PortReservation`]): for a proxy or server a test adds.
    pub fn port(&self) -> anyhow::Result<u16> {
        let reservation = reserve_port()?;
        let port = reservation.port;
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reservation);
        Ok(port)
    }

    fn lock_hc(&self) -> std::sync::MutexGuard<'_, HelmControllerSlot> {
        self.helm_controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<()> {
        let log = self.path.join("logs").join(format!("{name}.log"));
        let proc = Proc::spawn(name, cmd, &log)?;
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(proc);
        Ok(())
    }

    /// Polls `probe` until it returns `Ok` or `timeout` passes. On timeout,
    /// or when a testbed process has exited meanwhile, the error says what
    /// was seen last and carries the tail of every process log.
    ///
    /// Its future is not `Send` for every lifetime (an `AsyncFnMut` bound);
    /// inside `tokio::spawn` use [`Testbed::wait_fn`].
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut() -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        loop {
            if let Some(dead) = self.exited_process() {
                return Err(self.wait_failed(what, start, &format!("{dead} (giving up)")));
            }
            let seen = match probe().await {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            if start.elapsed() >= timeout {
                return Err(self.wait_failed(what, start, &seen));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// [`Testbed::wait`] for a closure returning a future (`move || async
    /// move { ... }`): its future is `Send`.
    pub async fn wait_fn<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            if let Some(dead) = self.exited_process() {
                return Err(self.wait_failed(what, start, &format!("{dead} (giving up)")));
            }
            let seen = match probe().await {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            if start.elapsed() >= timeout {
                return Err(self.wait_failed(what, start, &seen));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn wait_failed(&self, what: &str, start: Instant, seen: &str) -> anyhow::Error {
        anyhow!(
            "gave up after {:.1}s waiting for {what}; last seen: {seen}\n{}",
            start.elapsed().as_secs_f64(),
            self.log_tails(40)
        )
    }

    /// The first testbed process that has exited, described.
    fn exited_process(&self) -> Option<String> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dead) = procs.iter_mut().find_map(Proc::exited) {
            return Some(dead);
        }
        drop(procs);
        self.lock_hc().proc.as_mut().and_then(Proc::exited)
    }

    /// The last `lines` lines of every process log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let logs = self.path.join("logs");
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&logs)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for log in entries {
            out.push_str(&format!(
                "----- tail of {}\n{}\n",
                log.display(),
                process::tail(&log, lines)
            ));
        }
        out
    }

    /// The testbed directory (logs in `logs/`, kubeconfigs, PKI, etcd data).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn apiserver_url(&self) -> &str {
        &self.apiserver_url
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The CA, kube-apiserver's serving certificate and key (a TLS-terminating
    /// proxy can serve the same leaf), and the CA key.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// An admin client (`system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `http://127.0.0.1:P` serving `index.yaml` and the packaged test charts.
    pub fn chart_repo_url(&self) -> Option<&str> {
        self.chart_repo_url.as_deref()
    }

    /// source-controller's artifact server.
    pub fn source_storage_url(&self) -> Option<&str> {
        self.source_storage_url.as_deref()
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What the start had to fall back on (missing CRDs of a version).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn timings(&self) -> &StartTimings {
        &self.timings
    }

    /// The pids of every running process of the testbed, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| (p.name().to_owned(), p.pid()))
            .collect();
        if let Some(p) = self.lock_hc().proc.as_ref() {
            out.push((p.name().to_owned(), p.pid()));
        }
        out
    }

    /// Creates `namespace` unless it exists.
    pub async fn ensure_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        if api.get_opt(namespace).await?.is_some() {
            return Ok(());
        }
        self.create(json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace}}))
            .await
            .map(drop)
    }

    /// Creates the ServiceAccount `namespace/name` (and its namespace) unless
    /// it exists, asks a token for it by TokenRequest (`POST
    /// .../serviceaccounts/NAME/token`, as `kubectl create token` does — no
    /// controller-manager needed), and writes a kubeconfig with it.
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<ServiceAccountAccess> {
        self.ensure_namespace(namespace).await?;
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), namespace);
        if api.get_opt(name).await?.is_none() {
            self.create(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"namespace": namespace, "name": name}}))
                .await?;
        }
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 86400},
        });
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&request)?)?;
        let answer: Value = self
            .client
            .request(req)
            .await
            .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
        let token = answer["status"]["token"]
            .as_str()
            .ok_or_else(|| anyhow!("TokenRequest answer without status.token: {answer}"))?
            .to_owned();
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let kubeconfig = self.path.join(format!("sa-{namespace}-{name}.kubeconfig"));
        write_kubeconfig(
            &kubeconfig,
            &self.apiserver_url,
            &self.pki.ca_pem,
            &user,
            &token,
        )?;
        Ok(ServiceAccountAccess {
            user,
            token,
            kubeconfig,
        })
    }

    /// The fixed kubectl (1.33) with the admin kubeconfig and this
    /// testbed's own discovery cache.
    pub fn kubectl(&self) -> anyhow::Result<Command> {
        self.kubectl_with(&self.admin_kubeconfig)
    }

    /// The fixed kubectl with `kubeconfig`.
    pub fn kubectl_with(&self, kubeconfig: &Path) -> anyhow::Result<Command> {
        let mut cmd = Command::new(tools::kubectl()?);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&self.kubectl_cache)
            .env_remove("KUBECONFIG")
            .env("HOME", &self.path);
        Ok(cmd)
    }

    /// The API resource of `apiVersion`/`kind`, by discovery (cached).
    pub async fn resource(&self, api_version: &str, kind: &str) -> anyhow::Result<ApiResource> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, resource.clone());
        Ok(resource)
    }

    /// A dynamic API for `apiVersion`/`kind`, in `namespace` or cluster-wide.
    pub async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<Api<DynamicObject>> {
        let resource = self.resource(api_version, kind).await?;
        Ok(match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Creates `object` as admin; returns what the server stored.
    pub async fn create(&self, object: Value) -> anyhow::Result<Value> {
        let (api_version, kind, namespace, name) = identity(&object);
        let api = self.api(&api_version, &kind, namespace.as_deref()).await?;
        let object: DynamicObject = serde_json::from_value(object)?;
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating {kind} {}/{name}", namespace.unwrap_or_default()))?;
        Ok(serde_json::to_value(created)?)
    }

    /// Reads an object as admin; `None` when it does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        let api = self.api(api_version, kind, namespace).await?;
        Ok(api
            .get_opt(name)
            .await?
            .map(serde_json::to_value)
            .transpose()?)
    }

    /// JSON merge patch as admin, on the object or (`status`) its `/status`.
    pub async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
        status: bool,
    ) -> anyhow::Result<Value> {
        let api = self.api(api_version, kind, namespace).await?;
        let params = PatchParams::default();
        let patched = if status {
            api.patch_status(name, &params, &Patch::Merge(&patch)).await
        } else {
            api.patch(name, &params, &Patch::Merge(&patch)).await
        }
        .with_context(|| format!("patching {kind} {name} (status: {status})"))?;
        Ok(serde_json::to_value(patched)?)
    }

    /// The audit log's events (level Metadata), oldest first; empty unless
    /// [`Options::audit`].
    pub fn audit_events(&self) -> anyhow::Result<Vec<Value>> {
        let path = self.path.join("audit.log");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("audit line {l:.200}")))
            .collect()
    }

    /// Stops everything now (what dropping does) and removes the directory
    /// unless `keep`.
    pub fn shutdown(mut self, keep: bool) -> Option<PathBuf> {
        self.stop_everything();
        let dir = self.dir.take()?;
        if keep { Some(dir.keep()) } else { None }
    }

    fn stop_everything(&mut self) {
        let mut all: Vec<Proc> = Vec::new();
        if let Some(p) = self.lock_hc().proc.take() {
            all.push(p);
        }
        all.extend(
            self.procs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .rev(),
        );
        process::stop_all(&mut all, STOP_GRACE);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testbed: the test panicked; logs of {}:\n{}",
                self.path.display(),
                self.log_tails(30)
            );
        }
        self.stop_everything();
        if std::env::var_os("TESTBED_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("testbed: kept {} (TESTBED_KEEP)", dir.keep().display());
        }
    }
}

/// Writes with their request bodies, every other request at Metadata,
/// health probes not at all; one event per request (ResponseComplete).
const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: [/healthz*, /readyz*, /livez*]
  - level: Request
    verbs: [create, update, patch, delete, deletecollection]
  - level: Metadata
";

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// apiVersion, kind, namespace, name of an object.
fn identity(object: &Value) -> (String, String, Option<String>, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&object["apiVersion"]),
        s(&object["kind"]),
        object["metadata"]["namespace"].as_str().map(str::to_owned),
        s(&object["metadata"]["name"]),
    )
}

/// The `*.yaml` files of `dir`, sorted.
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every non-empty YAML document of `path`, as JSON.
pub fn read_yaml_docs(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}
