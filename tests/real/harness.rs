//! Issue 19 point 4: the testbed stops everything it started — also when
//! the test panics — and leaves no process, port or directory behind.

use std::path::PathBuf;

use testbed::Options;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_leaves_no_process_port_or_directory() {
    let (tx, rx) = tokio::sync::oneshot::channel::<(Vec<(String, u32)>, String, PathBuf)>();
    let task = tokio::spawn(async move {
        let options = Options {
            chart_repo: true,
            ..Options::apiserver_only()
        };
        let bed = support::start(options).await;
        let _ = tx.send((
            bed.pids(),
            bed.apiserver_url().to_owned(),
            bed.path().to_path_buf(),
        ));
        panic!("deliberately, with the testbed alive");
    });
    let (pids, url, dir) = rx.await.expect("the testbed started");
    let joined = task.await;
    assert!(
        joined.as_ref().is_err_and(|e| e.is_panic()),
        "the task panicked"
    );
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "chart-repo"]);
    for (name, pid) in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still there after the panic"
        );
    }
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("apiserver port {port} still taken: {e}"));
    assert!(!dir.exists(), "{} removed", dir.display());
}
