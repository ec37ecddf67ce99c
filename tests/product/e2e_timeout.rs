//! `--timeout` bounds the whole run: a request delayed past the deadline
//! ends the run in time with the exit code that applies.

use std::time::{Duration, Instant};

use crate::common::*;
use fake_apiserver::Fault;

const LATE: Duration = Duration::from_secs(30);

fn timed(cluster: &Cluster, args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = cluster.run(args);
    (out, started.elapsed())
}

#[test]
fn a_list_past_the_deadline_is_a_failed_list() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("GET", "helmreleases", None).delay(LATE));

    let (out, elapsed) = timed(&cluster, &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timeout"), "{stderr}");
    assert!(stderr.contains("--timeout"), "says what to check: {stderr}");
    assert!(
        stdout(&out)
            .contains("scanned=0 stuck=0 planned=0 acted=0 failed=0 guardrail=ok dry-run=none")
    );
    assert!(cluster.hr_writes().is_empty());
}

#[test]
fn a_storage_read_past_the_deadline_is_storage_unreadable() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("GET", "secrets", None).delay(LATE));

    let (out, elapsed) = timed(&cluster, &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        stdout(&out).contains("apps/web skip storage-unreadable"),
        "{}",
        describe(&out)
    );
    assert!(cluster.hr_writes().is_empty());
}

#[test]
fn a_status_patch_past_the_deadline_fails_and_is_rolled_back() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", Some("status")).delay(LATE));

    let (out, elapsed) = timed(&cluster, &["--timeout", "2s", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    let action = json_report(&out)["actions"][0].clone();
    assert_eq!(action["result"], "rolled-back", "{action}");
    assert!(
        action["error"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline"),
        "{action}"
    );
}

#[test]
fn a_wait_cut_by_the_deadline_still_resumes() {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));

    let (out, elapsed) = timed(&cluster, &["--timeout", "2s", "--suspend-wait", "60s"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    let hr = cluster.hr("apps", "web");
    assert_eq!(hr["spec"].get("suspend"), None, "never left suspended");
    assert_eq!(annotation(&hr, SUSPENDED_AT), None);
    assert!(
        stdout(&out)
            .contains("apps/web toggle-suspend pending-install-but-deployed failed error=deadline")
    );
}
