//! In-cluster configuration (SPEC §7; issue 11): the binary run as a pod
//! runs it, with no kubeconfig at all (`HOME` an empty temp dir, no
//! `KUBECONFIG`), `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`
//! naming the fake API server, and the service account's `token`, `ca.crt`
//! and `namespace` at `/var/run/secrets/kubernetes.io/serviceaccount/`,
//! the fixed path kube reads.
//!
//! The files are put there only for the binary: it runs under
//! `unshare --user --map-root-user --mount --propagation private`, which
//! mounts a tmpfs over `/run` when the path does not exist (this machine has
//! none) and binds a temp dir over it. That needs user namespaces (allowed
//! here, also to non-root users on most distributions) or root; without
//! them the tests fail and say so, they never skip.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use serde_json::json;

const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Printed by the wrapper once the files are in place, just before `exec`.
const MOUNTED: &str = "in-cluster test: service account files mounted";

/// Mounts `$1` over the service-account path in the (private) mount
/// namespace, then runs the rest of the arguments.
const WRAPPER: &str = r#"set -u
sa_dir=$1; shift
target=/var/run/secrets/kubernetes.io/serviceaccount
fail() { echo "in-cluster test setup failed: $*" >&2; exit 97; }
if [ ! -d "$target" ]; then
  run=$(readlink -f /var/run) || fail "cannot resolve /var/run"
  mount -t tmpfs fake-pod-run "$run" || fail "cannot mount a tmpfs over $run"
  mkdir -p "$target" || fail "cannot create $target on the tmpfs"
fi
mount --bind "$sa_dir" "$target" || fail "cannot bind-mount $sa_dir over $target"
echo "in-cluster test: service account files mounted" >&2
exec "$@"
"#;

/// The service account's files as the kubelet projects them.
fn service_account_files(dir: &Path, token: &str, ca_pem: &str) {
    std::fs::write(dir.join("token"), token).expect("token written");
    std::fs::write(dir.join("ca.crt"), ca_pem).expect("ca.crt written");
    std::fs::write(dir.join("namespace"), SA_NAMESPACE).expect("namespace written");
}

fn server_port(cluster: &Cluster) -> String {
    let url = cluster.server.url();
    url.rsplit(':').next().expect("port in the URL").to_owned()
}

/// The binary with `args` in a pod's environment: nothing of this
/// process's environment but `PATH`, an empty `HOME`, the service host and
/// port, and the files of `sa_dir` at the service-account path.
fn run_in_pod(cluster: &Cluster, sa_dir: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("temp HOME");
    let unshare = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("unshare (util-linux) is needed to give the binary a pod's file system");
    let out = Command::new(unshare)
        // A user namespace of its own (mapped to root inside) owns the new
        // mount namespace, so this works without root where unprivileged
        // user namespaces are allowed, as well as for root.
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg(WRAPPER)
        .arg("sh")
        .arg(sa_dir)
        .arg(assert_cmd::cargo::cargo_bin("stuck-hr-recovery"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", server_port(cluster))
        .output()
        .expect("unshare runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(MOUNTED),
        "could not give the binary the service account files at {SA_PATH} \
         (unshare --user --map-root-user --mount needs user namespaces, or root): status {:?}\n{stderr}",
        out.status.code()
    );
    assert!(
        !home.path().join(".kube").exists(),
        "no kubeconfig was written or read in HOME"
    );
    out
}

#[test]
fn in_a_pod_the_service_account_token_authenticates_and_the_run_acts() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let token = cluster
        .server
        .token(SA_USER)
        .expect("the service account's token");
    let sa = tempfile::tempdir().expect("temp dir");
    service_account_files(sa.path(), &token, cluster.server.ca_pem());

    let out = run_in_pod(&cluster, sa.path(), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["counts"]["scanned"], 2, "{report:#}");
    assert_eq!(report["counts"]["acted"], 1, "{report:#}");
    assert_eq!(report["actions"][0]["name"], json!("web"));
    assert_eq!(report["actions"][0]["result"], json!("succeeded"));

    let requests = cluster.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/helmreleases") && r.status == 200),
        "the list reached the server: {requests:#?}"
    );
    assert!(
        cluster.hr_writes().iter().any(|w| w.status == 200),
        "the run wrote to the stuck HelmRelease"
    );
    let users: std::collections::BTreeSet<&str> =
        requests.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(
        users,
        [SA_USER].into(),
        "every request authenticated as the service account"
    );
    cluster.assert_nothing_denied();
}

#[test]
fn in_a_pod_the_token_file_is_what_authenticates() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let sa = tempfile::tempdir().expect("temp dir");
    service_account_files(
        sa.path(),
        "not-a-token-the-server-knows",
        cluster.server.ca_pem(),
    );

    let out = run_in_pod(&cluster, sa.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let requests = cluster.requests();
    assert!(
        !requests.is_empty(),
        "the run reached the in-cluster address"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.status == 401 && r.user.is_empty()),
        "the file's token was sent and refused: {requests:#?}"
    );
}
