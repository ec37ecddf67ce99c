//! Shared helpers for the fake-apiserver tests: servers, fixtures, clients.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use fake_apiserver::{FakeApiServer, ServerConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};

pub const SA: &str = "system:serviceaccount:flux-system:stuck-hr-recovery";
pub const HR_API: &str = "helm.toolkit.fluxcd.io/v2";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rbac")
}

/// A server (admin only, no RBAC) seeded with `fixtures/helmreleases.yaml`.
pub fn server() -> FakeApiServer {
    let s = FakeApiServer::start(ServerConfig::new()).expect("server starts");
    s.apply_file(&fixture("helmreleases.yaml"))
        .expect("fixtures apply");
    s
}

/// A server enforcing the project's rbac/ folder, seeded like [`server`].
pub fn rbac_server() -> FakeApiServer {
    let s = FakeApiServer::start(ServerConfig::new().rbac_dir(rbac_dir())).expect("server starts");
    s.apply_file(&fixture("helmreleases.yaml"))
        .expect("fixtures apply");
    s
}

/// A valid HelmRelease with Ready=Unknown.
pub fn hr(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"interval": "5m", "chart": {"spec": {"chart": name, "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}},
        "status": {"conditions": [condition("Ready", "Unknown", "Progressing", "in progress")]},
    })
}

pub fn condition(ty: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-22T10:00:00Z"})
}

pub fn meta<'a>(obj: &'a Value, field: &str) -> &'a Value {
    &obj["metadata"][field]
}

/// A kube client for `user`, configured from the server's kubeconfig.
pub async fn client(server: &FakeApiServer, user: &str) -> kube::Client {
    let kc =
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig(user)).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(cfg).expect("kube client")
}

/// A raw request; answers the status code and the body as JSON (Null if not JSON).
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<(u16, Value), kube::Error> {
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let req = b.body(kube::client::Body::from(bytes)).unwrap();
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let data = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((code, serde_json::from_slice(&data).unwrap_or(Value::Null)))
}

pub fn hr_path(ns: &str, name: &str) -> String {
    format!("/apis/helm.toolkit.fluxcd.io/v2/namespaces/{ns}/helmreleases/{name}")
}

pub const MERGE: (&str, &str) = ("content-type", "application/merge-patch+json");
pub const JSON_PATCH: (&str, &str) = ("content-type", "application/json-patch+json");

/// The pinned kubectl next to the machine's dispatcher; panics when missing.
pub fn kubectl_bin(version: &str) -> PathBuf {
    let dispatcher = which("kubectl").unwrap_or_else(|| {
        panic!("kubectl is not on PATH: the kubectl acceptance suite needs the pinned kubectl.{version} (see ../shared/TOOLING.md)")
    });
    let real = std::fs::canonicalize(&dispatcher).expect("resolve kubectl");
    let bin = real
        .parent()
        .expect("kubectl dir")
        .join(format!("kubectl.{version}"));
    assert!(
        bin.is_file(),
        "kubectl.{version} not found at {}: the kubectl acceptance suite must not be skipped (see ../shared/TOOLING.md)",
        bin.display()
    );
    bin
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

/// One kubectl with its own kubeconfig and discovery cache.
pub struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(server: &FakeApiServer, user: &str, version: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        server
            .write_kubeconfig(&dir.path().join("kubeconfig"), user)
            .unwrap();
        Kubectl {
            bin: kubectl_bin(version),
            dir,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs")
    }

    /// Runs and asserts success; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `input` on stdin and asserts success; answers stdout.
    pub fn ok_with_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; answers stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1), "kubectl exit code");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}
