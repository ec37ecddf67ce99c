//! SPEC §9 made observable in the request log: paged listing, Helm storage
//! read only for the HelmReleases that need it, at most 16 requests in
//! flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::*;
use fake_apiserver::Fault;

fn hr_lists(cluster: &Cluster) -> Vec<fake_apiserver::RecordedRequest> {
    cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases") && r.verb == "list")
        .collect()
}

#[test]
fn helmreleases_are_listed_in_pages_of_500_with_continue() {
    let cluster = Cluster::start();
    cluster.seed(
        (0..1100).map(|i| Hr::healthy(&format!("team-{}", i % 7), &format!("app-{i:04}")).build()),
    );
    cluster.seed(stuck_deployed("team-3", "stuck"));

    let out = cluster.run(&["--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["counts"]["scanned"], 1101);
    assert_eq!(report["counts"]["planned"], 1);

    let lists = hr_lists(&cluster);
    assert_eq!(lists.len(), 3, "{lists:#?}");
    for (i, list) in lists.iter().enumerate() {
        assert_eq!(list.path, "/apis/helm.toolkit.fluxcd.io/v2/helmreleases");
        assert_eq!(list.query.get("limit").map(String::as_str), Some("500"));
        assert_eq!(list.query.contains_key("continue"), i > 0, "page {i}");
    }
}

#[test]
fn each_namespace_is_listed_on_its_own_with_the_selector() {
    let cluster = Cluster::start();
    cluster.seed([
        Hr::healthy("a", "one").label("tier", "web").build(),
        Hr::healthy("b", "two").label("tier", "web").build(),
        Hr::healthy("c", "three").label("tier", "web").build(),
    ]);
    let out = cluster.run(&[
        "--dry-run",
        "-n",
        "a",
        "-n",
        "b",
        "-l",
        "tier=web",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json_report(&out)["counts"]["scanned"], 2);
    let paths: Vec<String> = hr_lists(&cluster).into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/a/helmreleases",
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/b/helmreleases",
        ]
    );
    for list in hr_lists(&cluster) {
        assert_eq!(
            list.query.get("labelSelector").map(String::as_str),
            Some("tier=web")
        );
    }
}

#[test]
fn helm_storage_is_read_only_for_the_helmreleases_that_need_it() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "needs-b"));
    cluster.seed(stuck_pending("other", "needs-a"));
    cluster.seed([
        Hr::healthy("apps", "healthy").build(),
        Hr::deployed_unknown("apps", "young", 1).build(),
        Hr::deployed_unknown("apps", "paused", 10)
            .suspend(true)
            .build(),
        Hr::interrupted_toggle("apps", "ours").build(),
        helm_secret("apps", "healthy", 1, "deployed"),
        helm_secret("apps", "young", 1, "deployed"),
        helm_secret("apps", "paused", 1, "deployed"),
    ]);
    let out = cluster.run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let mut reads: Vec<(String, String, String)> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .map(|r| {
            assert_eq!(r.verb, "list");
            assert_eq!(r.method, "GET");
            (
                r.namespace
                    .clone()
                    .unwrap_or_else(|| panic!("namespaced, never cluster-wide: {r:?}")),
                r.query.get("labelSelector").cloned().unwrap_or_default(),
                r.query.get("limit").cloned().unwrap_or_default(),
            )
        })
        .collect();
    reads.sort();
    assert_eq!(
        reads,
        [
            (
                "apps".to_owned(),
                "owner=helm,name=needs-b".to_owned(),
                "500".to_owned()
            ),
            (
                "other".to_owned(),
                "owner=helm,name=needs-a".to_owned(),
                "500".to_owned()
            ),
        ]
    );
}

#[test]
fn at_most_16_requests_are_in_flight() {
    let cluster = Cluster::start();
    for i in 0..40 {
        cluster.seed(stuck_deployed(
            &format!("team-{}", i % 4),
            &format!("app-{i:02}"),
        ));
    }
    // Every request is held 300 ms; at each arrival, count the requests
    // that arrived (seq) minus those answered (in the log).
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&max_in_flight);
    let server = Arc::downgrade(&cluster.server);
    cluster.add_fault(
        Fault::on("*", "*", Some("*"))
            .delay(Duration::from_millis(300))
            .hook(Arc::new(move |r| {
                if let Some(server) = server.upgrade() {
                    let answered = server.requests().len() as u64;
                    seen.fetch_max(r.seq.saturating_sub(answered), Ordering::SeqCst);
                }
            })),
    );
    let out = cluster.run(&["--max-actions", "100", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json_report(&out)["counts"]["acted"], 40);
    let secret_reads = cluster
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .count();
    assert_eq!(secret_reads, 40);
    let max = max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 16, "at most 16 in flight, saw {max}");
    assert!(max >= 10, "the run does use its concurrency, saw {max}");
    eprintln!("max in flight: {max}");
}
