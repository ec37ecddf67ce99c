//! A TLS-terminating, fault-injecting reverse proxy for tests, on
//! `127.0.0.1`, in front of a real (or our fake) kube-apiserver.
//!
//! Clients — our binary through kube-rs/rustls, `kubectl`, Flux's
//! controllers through client-go — connect to [`FaultProxy::url`] and trust
//! the CA the proxy was given: it presents a leaf it generates (SAN
//! `IP:127.0.0.1`, `DNS:localhost`) signed by that CA. Each request is read
//! whole, matched against the [`Rule`]s (method, path, Kubernetes
//! coordinates, body, which occurrence), recorded as an [`Exchange`], and
//! then forwarded over HTTPS to the upstream (trusting only the upstream CA
//! given), answered by the proxy, dropped, or held for the test to release.
//! Answers are streamed back as they come, so watches pass through live.
//!
//! What passes through and what cannot: bearer tokens (and impersonation
//! headers) are forwarded untouched, so the apiserver authenticates and
//! authorises the real client. A client *certificate* cannot pass a
//! TLS-terminating proxy; clients behind it must authenticate with a token.
//! Only HTTP/1.1 is offered in ALPN: a dropped connection then means exactly
//! one request lost (on HTTP/2 it would be one stream reset), and client-go
//! (Go's `net/http`, asking for `h2,http/1.1`) and rustls/hyper fall back to
//! HTTP/1.1 when the server picks it — as against our fake API server.
//! Connection upgrades (`exec`, `port-forward`) are not supported.
//!
//! # Why our own proxy rather than mitmproxy
//!
//! The fault tests need the fault to be *decided and observed by the test
//! process itself*: a rule set or changed between two steps of a test, takes
//! effect on the very next request; its counters are read in-process, so a
//! test waits "until the rule fired N times" with a deadline instead of
//! sleeping; a held request is released by a function call at the exact
//! moment the test chooses (after it SIGKILLed the controller, say). With
//! mitmproxy each of those would be a Python addon talking to the test over
//! some IPC of our own making, plus a Python process to start, wait for and
//! clean up, with its own timing. This crate needs nothing outside our lock
//! file (tokio, hyper 1, rustls with ring, rcgen), no Python on the
//! machine, and runs in the test's own process (its own thread and runtime,
//! stopped when dropped).
//!
//! ```no_run
//! use std::time::Duration;
//! use fault_proxy::{Action, CaPem, FaultProxy, ProxyConfig, Rule};
//! # fn main() -> anyhow::Result<()> {
//! # let (upstream_url, upstream_ca_pem, admin_kubeconfig) = (String::new(), String::new(), String::new());
//! let ca = CaPem::generate("fault-proxy-ca")?; // or the testbed's CA (PKCS#8 key)
//! let proxy = FaultProxy::start(ProxyConfig::new(upstream_url, upstream_ca_pem, ca))?;
//! // The same kubeconfig, pointed at the proxy (token users only).
//! let through = proxy.kubeconfig_through(&admin_kubeconfig)?;
//! # drop(through);
//! // The first merge patch to a HelmRelease commits, and its client sees 504.
//! let rule = proxy.add_rule(
//!     Rule::new(Action::forward_then_timeout())
//!         .method("PATCH")
//!         .resource("helmreleases")
//!         .main_resource()
//!         .first(1),
//! );
//! // ... run the client ...
//! proxy.wait_fired(rule, 1, Duration::from_secs(30))?;
//! let ex = &proxy.requests_of(rule)[0];
//! assert_eq!((ex.upstream_status, ex.status()), (Some(200), Some(504)));
//! # Ok(())
//! # }
//! ```
//!
//! Holding a controller's status write while the controller dies:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use fault_proxy::{Action, FaultProxy, Rule};
//! # fn f(proxy: &FaultProxy, kill_the_controller: impl Fn()) -> anyhow::Result<()> {
//! let hold = proxy.add_rule(
//!     Rule::new(Action::Hold)
//!         .method("PATCH")
//!         .resource("helmreleases")
//!         .subresource("status")
//!         .body_contains("\"history\""),
//! );
//! let held = proxy.wait_held(hold, Duration::from_secs(60))?;
//! kill_the_controller(); // SIGKILL
//! proxy.wait_client_gone(held.id, Duration::from_secs(10))?;
//! proxy.remove_rule(hold); // the restarted controller's writes pass
//! proxy.release(held.id, Action::Drop)?; // or Action::Forward: it lands late
//! # Ok(())
//! # }
//! ```

mod proxy;
mod rules;
mod state;
mod tls;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use tokio::sync::oneshot;

pub use rules::{
    Action, ActionKind, Occurrence, Predicate, Reply, ReplyBody, RequestInfo, Rule, RuleId,
    TextMatch,
};
pub use state::{Exchange, HeldRequest, Outcome, RuleStats};
pub use tls::CaPem;

use crate::proxy::Upstream;
use crate::state::{RuleEntry, Shared};

/// How to start a [`FaultProxy`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// `https://host:port` of the API server.
    pub upstream_url: String,
    /// PEM of the CA(s) that signed the upstream's serving certificate.
    pub upstream_ca_pem: String,
    /// The CA that signs the proxy's own serving certificate (clients must
    /// trust it).
    pub ca: CaPem,
    /// Port on 127.0.0.1 to listen on; 0 (the default) picks a free one.
    pub port: u16,
}

impl ProxyConfig {
    pub fn new(
        upstream_url: impl Into<String>,
        upstream_ca_pem: impl Into<String>,
        ca: CaPem,
    ) -> ProxyConfig {
        ProxyConfig {
            upstream_url: upstream_url.into(),
            upstream_ca_pem: upstream_ca_pem.into(),
            ca,
            port: 0,
        }
    }

    pub fn port(mut self, port: u16) -> ProxyConfig {
        self.port = port;
        self
    }
}

/// A running proxy (its own thread and tokio runtime). Dropping it stops it:
/// the listener closes, every connection and held request is dropped.
/// Derefs to its [`ProxyHandle`].
pub struct FaultProxy {
    url: String,
    ca_pem: String,
    handle: ProxyHandle,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("url", &self.url)
            .finish()
    }
}

impl std::ops::Deref for FaultProxy {
    type Target = ProxyHandle;
    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

fn parse_upstream(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("upstream URL {url:?}"))?;
    if uri.scheme_str() != Some("https") {
        bail!("upstream URL {url:?}: only https:// is supported");
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        bail!("upstream URL {url:?}: a path prefix is not supported");
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("upstream URL {url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

impl FaultProxy {
    /// Listens on `127.0.0.1` and serves until dropped.
    pub fn start(config: ProxyConfig) -> anyhow::Result<FaultProxy> {
        let (host, port) = parse_upstream(&config.upstream_url)?;
        let server_config = tls::server_config(&config.ca)?;
        let client_config = tls::client_config(&config.upstream_ca_pem)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .context("building the proxy's runtime")?;
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", config.port))
            .with_context(|| format!("binding 127.0.0.1:{}", config.port))?;
        std_listener.set_nonblocking(true)?;
        let url = format!("https://127.0.0.1:{}", std_listener.local_addr()?.port());
        let shared = Arc::new(Shared::default());
        let upstream = Arc::new(Upstream {
            authority: if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            },
            host,
            port,
            connector: tokio_rustls::TlsConnector::from(client_config),
            shared: shared.clone(),
            runtime: runtime.handle().clone(),
        });
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).context("listener")?
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let (tx, mut rx) = oneshot::channel::<()>();
        let up = upstream.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                let _ = tcp.set_nodelay(true);
                                let acceptor = acceptor.clone();
                                let up = up.clone();
                                tokio::spawn(async move {
                                    if let Ok(tls) = acceptor.accept(tcp).await {
                                        proxy::serve_connection(tls, up).await;
                                    }
                                });
                            }
                        }
                    }
                });
                runtime.shutdown_background();
            })
            .context("spawning the proxy thread")?;
        Ok(FaultProxy {
            url,
            ca_pem: config.ca.cert_pem.clone(),
            handle: ProxyHandle { shared, upstream },
            shutdown: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// PEM of the CA that signed the proxy's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A cloneable, `Send + Sync` handle to the rules, log and held requests.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// `kubeconfig_yaml` with every cluster pointed at the proxy: `server`
    /// set to [`FaultProxy::url`], the CA set to [`FaultProxy::ca_pem`]
    /// (`certificate-authority-data`; any `certificate-authority` file,
    /// `tls-server-name` and `insecure-skip-tls-verify` removed). Fails for
    /// a user authenticating by client certificate, which cannot pass the
    /// proxy.
    pub fn kubeconfig_through(&self, kubeconfig_yaml: &str) -> anyhow::Result<String> {
        let mut doc: serde_json::Value =
            serde_saphyr::from_str(kubeconfig_yaml).context("parsing the kubeconfig")?;
        if let Some(users) = doc.get("users").and_then(|u| u.as_array()) {
            for u in users {
                let user = u.get("user");
                let has = |k: &str| user.and_then(|x| x.get(k)).is_some();
                if has("client-certificate") || has("client-certificate-data") {
                    bail!(
                        "kubeconfig user {:?} authenticates with a client certificate, which cannot pass a TLS-terminating proxy; give it a bearer token",
                        u.get("name").and_then(|n| n.as_str()).unwrap_or("?")
                    );
                }
            }
        }
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let clusters = doc
            .get_mut("clusters")
            .and_then(|c| c.as_array_mut())
            .ok_or_else(|| anyhow!("the kubeconfig has no clusters"))?;
        for c in clusters {
            let cluster = c
                .get_mut("cluster")
                .and_then(|c| c.as_object_mut())
                .ok_or_else(|| anyhow!("a kubeconfig cluster without `cluster`"))?;
            cluster.insert("server".into(), self.url.clone().into());
            cluster.insert("certificate-authority-data".into(), ca.clone().into());
            for k in [
                "certificate-authority",
                "tls-server-name",
                "insecure-skip-tls-verify",
            ] {
                cluster.remove(k);
            }
        }
        serde_saphyr::to_string(&doc).context("writing the kubeconfig")
    }
}

impl FaultProxy {
    /// [`FaultProxy::kubeconfig_through`] from file `from` to file `to`.
    pub fn write_kubeconfig_through(
        &self,
        from: &std::path::Path,
        to: &std::path::Path,
    ) -> anyhow::Result<()> {
        let yaml =
            std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
        std::fs::write(to, self.kubeconfig_through(&yaml)?)
            .with_context(|| format!("writing {}", to.display()))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shutdown.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(());
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(h) = t.take()
        {
            let _ = h.join();
        }
    }
}

/// Control of a running proxy: rules, counters, the log, held requests.
/// Every wait takes a deadline and fails with what it saw; there is a
/// blocking form (for plain `#[test]`s) and an `_async` form (for
/// `#[tokio::test]`s, which must not block their runtime).
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    upstream: Arc<Upstream>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("upstream", &self.upstream.authority)
            .finish()
    }
}

impl ProxyHandle {
    /// Adds a rule after the existing ones; it acts from the next request
    /// on. Every active rule whose matchers hold counts the request
    /// ([`RuleStats::matched`]), so `.nth(2)` is the second matching request
    /// through the proxy whichever rule acted on the first; the first rule
    /// (in the order added) whose occurrence selects the request acts on it
    /// ([`RuleStats::fired`]); when none does, it is forwarded.
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        let id = {
            let mut inner = self.shared.lock();
            inner.next_rule += 1;
            let id = RuleId(inner.next_rule);
            inner.rules.push(RuleEntry {
                id,
                rule,
                stats: RuleStats::default(),
                active: true,
            });
            id
        };
        self.shared.changed();
        id
    }

    /// Stops a rule; its counters stay readable.
    pub fn remove_rule(&self, id: RuleId) {
        for r in self.shared.lock().rules.iter_mut().filter(|r| r.id == id) {
            r.active = false;
        }
        self.shared.changed();
    }

    /// Stops every rule (requests are forwarded again).
    pub fn clear_rules(&self) {
        for r in self.shared.lock().rules.iter_mut() {
            r.active = false;
        }
        self.shared.changed();
    }

    /// The rule's counters (zero for an unknown id).
    pub fn stats(&self, id: RuleId) -> RuleStats {
        self.shared
            .lock()
            .rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.stats)
            .unwrap_or_default()
    }

    /// How many requests the rule acted on.
    pub fn fired(&self, id: RuleId) -> u64 {
        self.stats(id).fired
    }

    /// Blocks until the rule acted on at least `n` requests *and* each of
    /// them is settled (answered, dropped, held, or its client gone).
    pub fn wait_fired(&self, id: RuleId, n: u64, timeout: Duration) -> anyhow::Result<()> {
        self.shared
            .wait(&format!("rule {} to fire {n} times", id.0), timeout, |i| {
                fired_settled(i, id, n)
            })
    }

    /// [`ProxyHandle::wait_fired`] for async tests.
    pub async fn wait_fired_async(
        &self,
        id: RuleId,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.shared
            .wait_async(&format!("rule {} to fire {n} times", id.0), timeout, |i| {
                fired_settled(i, id, n)
            })
            .await
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Exchange> {
        self.shared.lock().log.clone()
    }

    /// The requests a rule acted on.
    pub fn requests_of(&self, id: RuleId) -> Vec<Exchange> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|e| e.rule == Some(id))
            .cloned()
            .collect()
    }

    /// Forgets the log (rule counters stay).
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
        self.shared.changed();
    }

    /// Blocks until `pred` holds for the log; answers the log then.
    pub fn wait_requests(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Exchange]) -> bool,
    ) -> anyhow::Result<Vec<Exchange>> {
        self.shared.wait("a request-log condition", timeout, |i| {
            pred(&i.log).then(|| i.log.clone())
        })
    }

    /// [`ProxyHandle::wait_requests`] for async tests.
    pub async fn wait_requests_async(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Exchange]) -> bool,
    ) -> anyhow::Result<Vec<Exchange>> {
        self.shared
            .wait_async("a request-log condition", timeout, |i| {
                pred(&i.log).then(|| i.log.clone())
            })
            .await
    }

    /// Requests held now, oldest first.
    pub fn held(&self) -> Vec<HeldRequest> {
        held_list(&self.shared.lock())
    }

    /// Blocks until `rule` holds a request; answers the oldest one.
    pub fn wait_held(&self, rule: RuleId, timeout: Duration) -> anyhow::Result<HeldRequest> {
        self.shared.wait(
            &format!("rule {} to hold a request", rule.0),
            timeout,
            |i| held_list(i).into_iter().find(|h| h.rule == rule),
        )
    }

    /// [`ProxyHandle::wait_held`] for async tests.
    pub async fn wait_held_async(
        &self,
        rule: RuleId,
        timeout: Duration,
    ) -> anyhow::Result<HeldRequest> {
        self.shared
            .wait_async(
                &format!("rule {} to hold a request", rule.0),
                timeout,
                |i| held_list(i).into_iter().find(|h| h.rule == rule),
            )
            .await
    }

    /// Blocks until the held request's client has closed its connection
    /// (say, after the test killed it).
    pub fn wait_client_gone(&self, held_id: u64, timeout: Duration) -> anyhow::Result<()> {
        self.shared.wait(
            &format!("the client of held request {held_id} to go away"),
            timeout,
            |i| {
                i.held
                    .get(&held_id)
                    .is_none_or(|h| h.tx.is_closed())
                    .then_some(())
            },
        )
    }

    /// Releases a held request with the action to take now (`Forward`,
    /// `ForwardThenRespond`, `ForwardThenDrop`, `Respond`, `Drop`,
    /// `Delay`). When its client has gone meanwhile, a forwarding action
    /// still sends it to the apiserver (whose answer goes to the log); the
    /// others just forget it.
    pub fn release(&self, held_id: u64, action: Action) -> anyhow::Result<()> {
        if action == Action::Hold {
            bail!("release with Action::Hold: nothing would change");
        }
        let held = self
            .shared
            .lock()
            .held
            .remove(&held_id)
            .ok_or_else(|| anyhow!("no held request {held_id}"))?;
        self.shared.changed();
        match held.tx.send(action) {
            Ok(()) => {}
            Err(action) => {
                let kind = action.kind();
                match action {
                    Action::Forward
                    | Action::Delay(_)
                    | Action::ForwardThenRespond(_)
                    | Action::ForwardThenDrop => proxy::forward_detached(
                        self.upstream.clone(),
                        held_id,
                        held.info.request,
                        held.headers,
                        kind,
                    ),
                    _ => self.shared.update(held_id, |e| e.action = kind),
                }
            }
        }
        Ok(())
    }
}

fn fired_settled(i: &state::Inner, id: RuleId, n: u64) -> Option<()> {
    let fired = i.rules.iter().find(|r| r.id == id)?.stats.fired;
    if fired < n {
        return None;
    }
    let pending = i
        .log
        .iter()
        .any(|e| e.rule == Some(id) && e.outcome == Outcome::Pending);
    (!pending).then_some(())
}

fn held_list(i: &state::Inner) -> Vec<HeldRequest> {
    i.held
        .values()
        .map(|h| {
            let mut info = h.info.clone();
            info.client_connected = !h.tx.is_closed();
            info
        })
        .collect()
}
