//! An in-process HTTPS stand-in for the Kubernetes API server, faithful where
//! our product and kubectl can tell the difference. See docs/fake-apiserver.md
//! for what it models and, as plainly, what it does not.
//!
//! ```no_run
//! use fake_apiserver::{FakeApiServer, ServerConfig};
//! let server = FakeApiServer::start(ServerConfig::new()).unwrap();
//! let kubeconfig = server.kubeconfig("admin");
//! # drop(kubeconfig);
//! ```

mod access_review;
mod cel;
pub mod controller;
mod discovery;
mod events;
pub mod faults;
pub mod generate;
mod http;
mod impersonate;
pub mod log;
mod ops;
mod patch;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod seed;
mod selector;
mod state;
pub mod status;
mod store;
mod table;
mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use base64::Engine;
use serde_json::Value;
use tokio::sync::oneshot;

pub use faults::{Fault, FaultAction, Hook};
pub use log::RecordedRequest;
pub use rbac::{RbacTally, RuleRef};
pub use status::ApiError;

use crate::faults::Faults;
use crate::log::RequestLog;
use crate::rbac::Rbac;
use crate::schema::CrdSchema;
use crate::state::{State, User};
use crate::store::Store;

/// How to start a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    crd_file: PathBuf,
    rbac_dir: Option<PathBuf>,
    users: Vec<(String, Vec<String>)>,
    page_size_cap: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new()
    }
}

fn sa_user(namespace: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{namespace}:{name}"),
        vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ],
    )
}

impl ServerConfig {
    /// The shared Flux HelmRelease CRD, admin user `admin` (system:masters), RBAC off.
    pub fn new() -> Self {
        ServerConfig {
            crd_file: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/crds/helm.toolkit.fluxcd.io_helmreleases.yaml"),
            rbac_dir: None,
            users: vec![(
                "admin".to_string(),
                vec![
                    "system:masters".to_string(),
                    "system:authenticated".to_string(),
                ],
            )],
            page_size_cap: None,
        }
    }

    /// Validate HelmReleases against another CRD file.
    pub fn crd_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.crd_file = path.into();
        self
    }

    /// Load every RBAC object in `dir` and enforce RBAC for non-admin users.
    pub fn rbac_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rbac_dir = Some(dir.into());
        self
    }

    /// Adds the token user `system:serviceaccount:<namespace>:<name>`.
    pub fn service_account(mut self, namespace: &str, name: &str) -> Self {
        self.users.push(sa_user(namespace, name));
        self
    }

    /// Adds any other token user.
    pub fn user(mut self, name: &str, groups: &[&str]) -> Self {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if !g.iter().any(|x| x == "system:authenticated") {
            g.push("system:authenticated".into());
        }
        self.users.push((name.to_string(), g));
        self
    }

    /// Caps `limit` server-side (and pages lists that ask for no limit).
    pub fn page_size_cap(mut self, n: usize) -> Self {
        self.page_size_cap = Some(n.max(1));
        self
    }
}

/// A running fake API server. Dropping it shuts it down.
pub struct FakeApiServer {
    state: Arc<State>,
    url: String,
    ca_pem: String,
    /// User → (certificate PEM, key PEM).
    client_cert_pems: HashMap<String, (String, String)>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url)
            .finish()
    }
}

impl FakeApiServer {
    /// Starts serving HTTPS on `127.0.0.1:<random>` on its own thread and runtime.
    pub fn start(config: ServerConfig) -> anyhow::Result<FakeApiServer> {
        let schema = CrdSchema::from_crd_file(&config.crd_file, resources::HELMRELEASES.version)?;
        let mut users = config.users.clone();
        let rbac = match &config.rbac_dir {
            Some(dir) => {
                let r = Rbac::load_dir(dir)?;
                for (ns, name) in &r.service_accounts {
                    let u = sa_user(ns, name);
                    if !users.iter().any(|(n, _)| *n == u.0) {
                        users.push(u);
                    }
                }
                Some(Mutex::new(r))
            }
            None => None,
        };
        let tls = tls::generate(&users)?;
        let mut tokens = HashMap::new();
        let mut client_certs = HashMap::new();
        for (i, (name, groups)) in users.into_iter().enumerate() {
            let token = format!("fake-token-{i}-{}", name.replace([':', ' '], "-"));
            let user = User { name, groups };
            if let Some(cert) = tls.client_certs.iter().find(|c| c.user == user.name) {
                client_certs.insert(cert.der.clone(), user.clone());
            }
            tokens.insert(token, user);
        }
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let url = format!("https://127.0.0.1:{port}");
        let state = Arc::new(State {
            store: Mutex::new(Store::default()),
            schema: Some(schema),
            tokens,
            client_certs,
            rbac,
            faults: Mutex::new(Faults::default()),
            log: RequestLog::default(),
            seq: AtomicU64::new(0),
            page_size_cap: config.page_size_cap,
        });
        let (tx, rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let st = state.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let address = format!("127.0.0.1:{port}");
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    http::run(listener, acceptor, st, address, rx).await;
                });
                rt.shutdown_background();
            })
            .context("spawning server thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("server thread exited before listening"))??;
        Ok(FakeApiServer {
            state,
            url,
            ca_pem: tls.ca_pem,
            client_cert_pems: tls
                .client_certs
                .into_iter()
                .map(|c| (c.user, (c.cert_pem, c.key_pem)))
                .collect(),
            shutdown: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// PEM certificate and key of a configured user's client certificate
    /// (CN = user, O = groups), signed by the server's CA.
    pub fn client_certificate(&self, user: &str) -> Option<(&str, &str)> {
        self.client_cert_pems
            .get(user)
            .map(|(cert, key)| (cert.as_str(), key.as_str()))
    }

    /// The bearer token of a configured user.
    pub fn token(&self, user: &str) -> Option<String> {
        self.state.token_for_user(user).map(str::to_string)
    }

    /// Kubeconfig YAML for `user` (an unknown user gets a token the server rejects).
    pub fn kubeconfig(&self, user: &str) -> String {
        let token = self
            .token(user)
            .unwrap_or_else(|| format!("unknown-user-{user}"));
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": user, "namespace": "default"}}],
            "current-context": "fake",
            "preferences": {},
        });
        serde_saphyr::to_string(&doc).unwrap_or_default()
    }

    pub fn write_kubeconfig(&self, path: &Path, user: &str) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig(user))
            .with_context(|| format!("writing kubeconfig {}", path.display()))
    }

    /// Create-or-replace bypassing RBAC and the request log. Fills uid,
    /// resourceVersion, creationTimestamp and (where kept) generation unless
    /// given; keeps status as given; validates HelmReleases against the CRD.
    pub fn apply(&self, obj: Value) -> anyhow::Result<Value> {
        self.apply_shared(obj).map(|v| (*v).clone())
    }

    /// Like [`apply`](Self::apply) for many objects, without returning them
    /// (the fast path for seeding large clusters). Answers how many were applied.
    pub fn apply_all(&self, objects: impl IntoIterator<Item = Value>) -> anyhow::Result<usize> {
        let mut n = 0;
        for o in objects {
            self.apply_shared(o)?;
            n += 1;
        }
        Ok(n)
    }

    fn apply_shared(&self, obj: Value) -> anyhow::Result<Arc<Value>> {
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let def = resources::by_kind(&av, &kind)
            .ok_or_else(|| anyhow!("fake-apiserver does not serve {av} {kind}"))?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.state
            .seed(def, obj)
            .with_context(|| format!("applying {kind} {name}"))
    }

    /// Applies every document of a multi-document YAML (or JSON) text.
    pub fn apply_yaml(&self, multi_doc_yaml: &str) -> anyhow::Result<usize> {
        let docs = seed::parse_documents(multi_doc_yaml)?;
        let n = docs.len();
        for d in docs {
            self.apply(d)?;
        }
        Ok(n)
    }

    /// Applies a `.yaml`/`.yml`/`.json` file (multi-document, `kind: List` too).
    pub fn apply_file(&self, path: &Path) -> anyhow::Result<usize> {
        let docs = seed::read_file(path)?;
        let n = docs.len();
        for d in docs {
            self.apply(d)
                .with_context(|| format!("seeding from {}", path.display()))?;
        }
        Ok(n)
    }

    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let def = resources::by_api_version(api_version, plural)?;
        self.state
            .get_object(def, namespace, name)
            .ok()
            .map(|v| (*v).clone())
    }

    pub fn list(&self, api_version: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(def) = resources::by_api_version(api_version, plural) else {
            return Vec::new();
        };
        let Ok(store) = self.state.store.lock() else {
            return Vec::new();
        };
        store
            .entries(def, namespace)
            .map(|(_, e)| events::to_view(def, &e.obj).unwrap_or_else(|| (*e.obj).clone()))
            .collect()
    }

    pub fn helmrelease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(
            "helm.toolkit.fluxcd.io/v2",
            "helmreleases",
            Some(namespace),
            name,
        )
    }

    pub fn helmreleases(&self) -> Vec<Value> {
        self.list("helm.toolkit.fluxcd.io/v2", "helmreleases", None)
    }

    /// Every Event, written through either API, in creation order and in
    /// `events.k8s.io/v1` form (core and events.k8s.io Events are one
    /// resource, as on a real server).
    pub fn events(&self) -> Vec<Value> {
        let Ok(store) = self.state.store.lock() else {
            return Vec::new();
        };
        let mut all: Vec<(u64, Value)> = store
            .entries(&resources::EVENTS, None)
            .map(|(_, e)| (e.created_seq, (*e.obj).clone()))
            .collect();
        all.sort_by_key(|(s, _)| *s);
        all.into_iter().map(|(_, v)| v).collect()
    }

    /// Every request served so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.state.log.clear();
    }

    /// Also write every request as a JSON line to `sink` (flushed per line).
    pub fn set_request_sink(&self, sink: Box<dyn std::io::Write + Send>) {
        self.state.log.set_sink(sink);
    }

    pub fn add_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.add(fault);
        }
    }

    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.clear();
        }
    }

    /// Every loaded RBAC rule with its use count, and every denied request.
    pub fn rbac_tally(&self) -> RbacTally {
        self.state
            .rbac
            .as_ref()
            .and_then(|r| r.lock().ok().map(|r| r.tally()))
            .unwrap_or_default()
    }

    /// Number of stored objects of a resource.
    pub fn count(&self, api_version: &str, plural: &str) -> usize {
        let Some(def) = resources::by_api_version(api_version, plural) else {
            return 0;
        };
        self.state.store.lock().map(|s| s.len(def)).unwrap_or(0)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shutdown.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(());
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
            // Dropped from a hook on the server's own thread: it stops by itself.
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}
