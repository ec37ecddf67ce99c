//! The fake API server as upstream, the proxy in front of it, and clients
//! (kube-rs, the pinned kubectl) that reach the server only through it.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, ServerConfig};
use fault_proxy::{CaPem, FaultProxy, ProxyConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};

pub const HR_API: &str = "helm.toolkit.fluxcd.io/v2";
pub const MERGE: &str = "application/merge-patch+json";
/// Every wait in these tests has this deadline; none sleeps.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Setup {
    pub fake: FakeApiServer,
    pub proxy: FaultProxy,
    /// The admin's kubeconfig, pointed at the proxy.
    pub kubeconfig: String,
}

/// The fake server seeded with HelmRelease `apps/podinfo`, the proxy in
/// front of it with a CA of its own.
pub fn setup() -> Setup {
    setup_with(CaPem::generate("fault-proxy-test-ca").expect("CA"))
}

/// As [`setup`], the proxy's leaf signed by `ca`.
pub fn setup_with(ca: CaPem) -> Setup {
    let fake = FakeApiServer::start(ServerConfig::new()).expect("fake server starts");
    fake.apply(hr("apps", "podinfo")).expect("seed");
    let proxy =
        FaultProxy::start(ProxyConfig::new(fake.url(), fake.ca_pem(), ca)).expect("proxy starts");
    let kubeconfig = proxy
        .kubeconfig_through(&fake.kubeconfig("admin"))
        .expect("kubeconfig through the proxy");
    Setup {
        fake,
        proxy,
        kubeconfig,
    }
}

pub fn hr(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"interval": "5m", "chart": {"spec": {"chart": name, "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "Progressing",
            "message": "in progress", "lastTransitionTime": "2026-11-22T10:00:00Z"}]},
    })
}

pub fn hr_path(ns: &str, name: &str) -> String {
    format!("/apis/helm.toolkit.fluxcd.io/v2/namespaces/{ns}/helmreleases/{name}")
}

/// A proxy in front of [`crate::stub::StubUpstream`] (which streams
/// watches) and a kubeconfig through it (token `stub-token`).
pub fn stub_setup() -> (crate::stub::StubUpstream, FaultProxy, String) {
    let stub = crate::stub::StubUpstream::start();
    let ca = CaPem::generate("fault-proxy-test-ca").expect("CA");
    let proxy = FaultProxy::start(ProxyConfig::new(stub.url.clone(), stub.ca_pem.clone(), ca))
        .expect("proxy starts");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": "https://unused.invalid"}}],
        "users": [{"name": "stub", "user": {"token": "stub-token"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "apps"}}],
        "current-context": "stub",
    });
    let kubeconfig = proxy
        .kubeconfig_through(&serde_saphyr::to_string(&kubeconfig).unwrap())
        .expect("kubeconfig through the proxy");
    (stub, proxy, kubeconfig)
}

/// A CA made by OpenSSL 3 rather than rcgen (PrintableString country,
/// four RDNs, PKCS#8 P-256 key; test-only, valid until 2046):
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
/// -days 7300 -subj "/C=DE/O=stuck-hr-recovery tests/OU=fault-proxy/CN=openssl
/// fixture CA" -addext "basicConstraints=critical,CA:TRUE" -addext
/// "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"`.
pub fn openssl_ca() -> CaPem {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    CaPem::from_files(dir.join("openssl-ca.crt"), dir.join("openssl-ca.key")).expect("fixture CA")
}

/// The label `fault` of `apps/podinfo` on the server itself.
pub fn label(fake: &FakeApiServer) -> Option<String> {
    fake.helmrelease("apps", "podinfo")
        .and_then(|o| o.pointer("/metadata/labels/fault").cloned())
        .and_then(|v| v.as_str().map(str::to_string))
}

/// A kube client through the proxy, without kube's own retries (so each
/// answer is seen as the proxy gave it).
pub async fn client(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig parses");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("kube client")
}

/// An answer as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// A raw request through kube's client stack.
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, kube::Error> {
    let mut b = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        b = b.header("content-type", MERGE);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let resp = client
        .send(b.body(kube::client::Body::from(bytes)).unwrap())
        .await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let data = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_slice(&data).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&data).into_owned(),
    })
}

/// A merge patch setting label `fault` on `apps/podinfo`.
pub async fn patch_label(client: &kube::Client, value: &str) -> Result<Answer, kube::Error> {
    send(
        client,
        "PATCH",
        &hr_path("apps", "podinfo"),
        Some(json!({"metadata": {"labels": {"fault": value}}})),
    )
    .await
}

/// The pinned kubectl next to the machine's dispatcher; panics when missing.
pub fn kubectl_bin() -> PathBuf {
    let dispatcher = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("kubectl"))
                .find(|p| p.is_file())
        })
        .expect("kubectl is not on PATH: these tests need the pinned kubectl.1.33");
    let real = std::fs::canonicalize(dispatcher).expect("resolve kubectl");
    let bin = real.parent().expect("kubectl dir").join("kubectl.1.33");
    assert!(bin.is_file(), "kubectl.1.33 not found at {}", bin.display());
    bin
}

/// One kubectl with its own kubeconfig (through the proxy) and a fresh
/// discovery cache.
pub struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(kubeconfig: &str) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Kubectl {
            bin: kubectl_bin(),
            dir,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure, answers stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts kubectl with piped stdout; its lines arrive on the receiver.
    pub fn spawn_lines(&self, args: &[&str]) -> (ChildGuard, mpsc::Receiver<String>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (ChildGuard(child), rx)
    }

    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        ChildGuard(
            self.command(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl starts"),
        )
    }
}

/// Kills and reaps the child when dropped (a failing test leaves none).
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
