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

/// Issue 19 point 5: `scripts/testbed up` starts everything in the
/// background and prints the admin kubeconfig as its last line; the real
/// kubectl and our binary work with it; `scripts/testbed down` stops all of
/// it. A server killed with SIGKILL takes its processes with it.
#[test]
fn scripts_testbed_up_then_down() {
    let state = tempfile::tempdir().expect("state dir");
    let script = support::repo().join("scripts/testbed");
    // Whatever fails below, the server `up` started is stopped (SIGTERM to
    // the pid it recorded; it stops its own processes).
    let _guard = StopServer(state.path().join("serve.pid"));
    let up = std::process::Command::new(&script)
        .arg("up")
        .env("TESTBED_STATE", state.path())
        .output()
        .expect("scripts/testbed up runs");
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(up.status.success(), "up: {}", support::describe(&up));
    let kubeconfig = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(
        kubeconfig.is_file(),
        "last line is the kubeconfig: {stdout}"
    );
    let pids: Vec<u32> = std::fs::read_to_string(state.path().join("pids"))
        .expect("pids written")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "etcd",
        "kube-apiserver",
        "chart-repo",
        "source-controller",
        "helm-controller",
    ] {
        assert!(names.contains(&name), "{name} listed: {stdout}");
    }

    let down = || {
        std::process::Command::new(&script)
            .arg("down")
            .env("TESTBED_STATE", state.path())
            .output()
            .expect("scripts/testbed down runs")
    };
    let checks = std::panic::catch_unwind(|| {
        let kubectl = testbed::tools::kubectl().expect("kubectl");
        let get = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(state.path().join("kubectl-cache"))
            .args(["get", "hr", "-A"])
            .output()
            .expect("kubectl runs");
        assert!(
            get.status.success(),
            "kubectl get hr -A: {}",
            support::describe(&get)
        );
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_stuck-hr-recovery"))
            .arg("--dry-run")
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("the binary runs");
        assert_eq!(run.status.code(), Some(0), "{}", support::describe(&run));
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("scanned=0"),
            "{}",
            support::describe(&run)
        );
    });
    let stopped = down();
    assert!(
        stopped.status.success(),
        "down: {}",
        support::describe(&stopped)
    );
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic);
    }
    for pid in pids {
        assert!(!running(pid), "pid {pid} still running after down");
    }
    let left: Vec<_> = std::fs::read_dir(state.path())
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("testbed-"))
        .collect();
    assert!(left.is_empty(), "cluster directory removed: {left:?}");

    // The server SIGKILLed (no Drop runs): PDEATHSIG takes every process
    // down with it, and `down` still removes the cluster directory. (The
    // binary the script built above, without a second cargo run.)
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join("target"));
    let up = std::process::Command::new(target.join("debug/testbed"))
        .args(["up", "--no-controllers"])
        .env("TESTBED_STATE", state.path())
        .output()
        .expect("scripts/testbed up runs");
    assert!(up.status.success(), "up: {}", support::describe(&up));
    let pids: Vec<(String, u32)> = std::fs::read_to_string(state.path().join("pids"))
        .expect("pids written")
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect();
    let serve = pids
        .iter()
        .find(|(name, _)| name == "testbed-serve")
        .map(|(_, pid)| *pid)
        .expect("the server's pid");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &serve.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -KILL {serve}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut alive: Vec<(String, u32)> = pids.clone();
    while !alive.is_empty() && std::time::Instant::now() < deadline {
        alive.retain(|(_, pid)| running(*pid));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        alive.is_empty(),
        "still running after the server's SIGKILL: {alive:?}"
    );
    let stopped = down();
    assert!(
        stopped.status.success(),
        "down: {}",
        support::describe(&stopped)
    );
    let left: Vec<_> = std::fs::read_dir(state.path())
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("testbed-"))
        .collect();
    assert!(
        left.is_empty(),
        "down removed the killed server's directory: {left:?}"
    );
}

/// Whether `pid` exists and is not a zombie (`up`'s server is reparented
/// to pid 1 once `up` exits; its reaping is not ours to wait for).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// On drop, SIGTERM to the pid in the file (a `testbed serve` a failing test
/// would otherwise leave running), if it still runs.
struct StopServer(PathBuf);

impl Drop for StopServer {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("testbed"));
        if ours && running(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while running(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
