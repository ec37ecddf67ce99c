//! Cluster access as kubectl has it (SPEC §7), with real components: a real
//! CONNECT proxy (Debian `tinyproxy`, installed by `scripts/install-tools`)
//! between the binary and the fake API server, an `exec` credential plugin,
//! a `certificate-authority` file, `--kubeconfig`, a merged two-file
//! `KUBECONFIG` and `--context`.
//!
//! Go (and so kubectl) never sends a loopback or `localhost` server through
//! `HTTPS_PROXY`; the fake server listens on 127.0.0.1, so the `HTTPS_PROXY`
//! tests name it `0.0.0.0` — a connection to it reaches the local listener
//! but is not a loopback address — and verify its certificate as
//! `localhost` (`tls-server-name`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// A real tinyproxy on a free loopback port, logging every CONNECT.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start() -> Tinyproxy {
        let binary = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "tinyproxy not found: run scripts/install-tools (it apt-get installs tinyproxy)",
            );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nPidFile \"{}\"\nLogFile \"{}\"\nLogLevel Info\n",
                dir.path().join("tinyproxy.pid").display(),
                log.display()
            ),
        )
        .expect("config written");
        let child = Command::new(binary)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        let mut proxy = Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("tinyproxy exited ({status}): {}", proxy.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CONNECT requests the proxy saw.
    fn tunnels(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("Request") && l.contains("CONNECT "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster's own kubeconfig as JSON, to change and write elsewhere.
fn kubeconfig_of(cluster: &Cluster) -> Value {
    let text = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
    serde_saphyr::from_str(&text).expect("kubeconfig YAML")
}

fn write(dir: &Path, name: &str, doc: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_saphyr::to_string(doc).expect("YAML")).expect("written");
    path
}

fn server_port(cluster: &Cluster) -> u16 {
    let server = kubeconfig_of(cluster)["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .to_owned();
    server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The binary with `--kubeconfig path`, no proxy variable from outside.
fn run_with(cluster: &Cluster, path: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = cluster.std_cmd();
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(path)
        .envs(env.iter().copied());
    cmd.output().expect("the binary runs")
}

fn assert_listed(cluster: &Cluster, out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    assert!(stdout(out).starts_with("scanned=1 "), "{}", describe(out));
    assert!(
        cluster
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/helmreleases") && r.status == 200),
        "the list reached the server"
    );
}

#[test]
fn a_kubeconfig_proxy_url_tunnels_through_a_real_connect_proxy() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let proxy = Tinyproxy::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut doc = kubeconfig_of(&cluster);
    doc["clusters"][0]["cluster"]["proxy-url"] = json!(proxy.url());
    let path = write(dir.path(), "proxied", &doc);

    let out = run_with(&cluster, &path, &[("NO_PROXY", "*")]);
    assert_listed(&cluster, &out);
    let target = format!("CONNECT 127.0.0.1:{}", server_port(&cluster));
    let tunnels = proxy.tunnels();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| t.contains(&target)),
        "every request went through the proxy's tunnel to {target}: {tunnels:?}\n{}",
        proxy.log_text()
    );
}

/// The kubeconfig naming the server `0.0.0.0` (not loopback to Go).
fn non_loopback_kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    let mut doc = kubeconfig_of(cluster);
    let port = server_port(cluster);
    doc["clusters"][0]["cluster"]["server"] = json!(format!("https://0.0.0.0:{port}"));
    doc["clusters"][0]["cluster"]["tls-server-name"] = json!("localhost");
    write(dir, "non-loopback", &doc)
}

#[test]
fn https_proxy_from_the_environment_tunnels_through_a_real_connect_proxy() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let proxy = Tinyproxy::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = non_loopback_kubeconfig(&cluster, dir.path());

    let out = run_with(
        &cluster,
        &path,
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "example.com,10.0.0.0/8"),
        ],
    );
    assert_listed(&cluster, &out);
    let target = format!("CONNECT 0.0.0.0:{}", server_port(&cluster));
    let tunnels = proxy.tunnels();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| t.contains(&target)),
        "HTTPS_PROXY carried the requests to {target}: {tunnels:?}\n{}",
        proxy.log_text()
    );

    let lower = run_with(&cluster, &path, &[("https_proxy", &proxy.url())]);
    assert_listed(&cluster, &lower);
    assert!(
        proxy.tunnels().len() > tunnels.len(),
        "https_proxy is read too"
    );
}

#[test]
fn no_proxy_naming_the_server_bypasses_the_proxy() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let proxy = Tinyproxy::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = non_loopback_kubeconfig(&cluster, dir.path());

    for no_proxy in ["0.0.0.0", "10.0.0.0/8, 0.0.0.0/32", "*"] {
        let out = run_with(
            &cluster,
            &path,
            &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", no_proxy)],
        );
        assert_listed(&cluster, &out);
    }
    let loopback = run_with(
        &cluster,
        cluster.kubeconfig(),
        &[("HTTPS_PROXY", &proxy.url())],
    );
    assert_listed(&cluster, &loopback);
    assert_eq!(
        proxy.tunnels(),
        Vec::<String>::new(),
        "NO_PROXY and a loopback server go direct, as kubectl does"
    );
}

#[test]
fn an_exec_credential_plugin_supplies_the_token_and_a_ca_file_is_trusted() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let token = cluster
        .server
        .token(SA_USER)
        .expect("the service account has a token");
    let ran = dir.path().join("plugin-ran");
    let plugin = dir.path().join("credential-plugin");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\n# An exec credential plugin as EKS, GKE and kubelogin ship them.\n\
             echo \"$KUBERNETES_EXEC_INFO\" > '{}'\n\
             printf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n",
            ran.display()
        ),
    )
    .expect("plugin written");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("plugin executable");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, cluster.server.ca_pem()).expect("CA written");

    let mut doc = kubeconfig_of(&cluster);
    let cluster_entry = doc["clusters"][0]["cluster"]
        .as_object_mut()
        .expect("cluster");
    cluster_entry.remove("certificate-authority-data");
    cluster_entry.insert("certificate-authority".into(), json!("ca.crt"));
    doc["users"][0]["user"] = json!({"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": plugin,
        "interactiveMode": "Never",
    }});
    let path = write(dir.path(), "exec", &doc);

    let out = run_with(&cluster, &path, &[]);
    assert_listed(&cluster, &out);
    let info = std::fs::read_to_string(&ran).expect("the plugin ran");
    assert!(info.contains("client.authentication.k8s.io/v1"), "{info}");
    assert!(
        cluster.requests().iter().all(|r| r.user == SA_USER),
        "every request authenticated as the plugin's user"
    );
}

#[test]
fn a_two_file_kubeconfig_merges_first_file_wins_and_context_picks_one() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let good = kubeconfig_of(&cluster);
    let mut dead = good.clone();
    dead["clusters"][0]["cluster"]["server"] = json!("https://127.0.0.1:1");

    // File 1: the current context and the real cluster, no users.
    let first = json!({
        "apiVersion": "v1", "kind": "Config",
        "current-context": "fake",
        "clusters": good["clusters"],
        "contexts": good["contexts"],
    });
    // File 2: a dead cluster of the same name (loses), another current
    // context (loses), the user (merged in), and a context "dead".
    let second = json!({
        "apiVersion": "v1", "kind": "Config",
        "current-context": "dead",
        "clusters": [dead["clusters"][0].clone(),
                     {"name": "dead", "cluster": dead["clusters"][0]["cluster"]}],
        "users": good["users"],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": SA_USER}}],
    });
    let a = write(dir.path(), "a", &first);
    let b = write(dir.path(), "b", &second);
    let both = std::env::join_paths([&a, &b]).expect("joined");

    let merged = cluster
        .std_cmd()
        .env("KUBECONFIG", &both)
        .output()
        .expect("runs");
    assert_listed(&cluster, &merged);

    let dead_context = cluster
        .std_cmd()
        .env("KUBECONFIG", &both)
        .args(["--context", "dead", "--timeout", "20s"])
        .output()
        .expect("runs");
    assert_eq!(
        dead_context.status.code(),
        Some(4),
        "{}",
        describe(&dead_context)
    );

    // --kubeconfig beats KUBECONFIG.
    let single = cluster
        .std_cmd()
        .env("KUBECONFIG", &b)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .output()
        .expect("runs");
    assert_listed(&cluster, &single);
}

/// The kubeconfig with its user authenticating by `cert` and `key` (PEM).
fn client_cert_kubeconfig(
    cluster: &Cluster,
    dir: &Path,
    cert: &str,
    key: &str,
    files: bool,
) -> PathBuf {
    use base64::Engine as _;
    let mut doc = kubeconfig_of(cluster);
    doc["users"][0]["user"] = if files {
        std::fs::write(dir.join("client.crt"), cert).expect("cert written");
        std::fs::write(dir.join("client.key"), key).expect("key written");
        json!({"client-certificate": "client.crt", "client-key": "client.key"})
    } else {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        json!({"client-certificate-data": b64(cert), "client-key-data": b64(key)})
    };
    write(dir, if files { "cert-files" } else { "cert-data" }, &doc)
}

#[test]
fn a_client_certificate_user_authenticates_with_data_or_files() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let (cert, key) = cluster
        .server
        .client_certificate(SA_USER)
        .expect("the service account has a client certificate");
    for files in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = client_cert_kubeconfig(&cluster, dir.path(), cert, key, files);
        let out = run_with(&cluster, &path, &[]);
        assert_listed(&cluster, &out);
    }
    let requests = cluster.requests();
    assert!(
        requests.iter().all(|r| r.user == SA_USER),
        "the certificate's CN is the user: {:?}",
        requests.iter().map(|r| &r.user).collect::<Vec<_>>()
    );
    cluster.assert_nothing_denied();
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let stranger = Cluster::start();
    let (cert, key) = stranger
        .server
        .client_certificate(SA_USER)
        .expect("a certificate of another CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = client_cert_kubeconfig(&cluster, dir.path(), cert, key, false);
    let out = run_with(&cluster, &path, &[("STUCK_HR_TIMEOUT", "20s")]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        cluster.requests().is_empty(),
        "the TLS handshake failed: no request"
    );
}

#[test]
fn insecure_skip_tls_verify_is_honoured_only_when_the_kubeconfig_says_so_with_a_warning() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut doc = kubeconfig_of(&cluster);
    let entry = doc["clusters"][0]["cluster"]
        .as_object_mut()
        .expect("cluster");
    entry.remove("certificate-authority-data");
    let untrusted = write(dir.path(), "untrusted", &doc);
    doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = json!(true);
    let insecure = write(dir.path(), "insecure", &doc);

    let refused = run_with(&cluster, &untrusted, &[("STUCK_HR_TIMEOUT", "20s")]);
    assert_eq!(refused.status.code(), Some(4), "{}", describe(&refused));
    assert!(cluster.requests().is_empty(), "an unknown CA is refused");

    let out = run_with(&cluster, &insecure, &[]);
    assert_listed(&cluster, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("insecure-skip-tls-verify"),
        "a warning: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&refused.stderr).contains("insecure-skip-tls-verify"),
        "no warning when the kubeconfig verifies"
    );
}
