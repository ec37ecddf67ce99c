//! `--dry-run` (client) and `--dry-run=server` end to end, shown by the
//! request log.

use std::time::{Duration, Instant};

use crate::common::*;

fn seed_every_remedy(cluster: &Cluster) {
    cluster.seed(stuck_deployed("apps", "corrected"));
    cluster.seed(stuck_pending("apps", "toggled"));
    cluster.seed([
        Hr::interrupted_toggle("apps", "half").build(),
        Hr::stale_marker("apps", "stale").build(),
        Hr::healthy("apps", "calm").build(),
    ]);
}

#[test]
fn client_dry_run_only_reads_and_reports_every_action_planned() {
    let cluster = Cluster::start();
    seed_every_remedy(&cluster);
    let before = cluster.server.helmreleases();

    let out = cluster.run(&["--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["dryRun"], "client");
    let results: Vec<(&str, &str)> = report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["branch"].as_str().unwrap_or_default(),
                a["result"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("correct-status", "planned"),
            ("resume", "planned"),
            ("clear-marker", "planned"),
            ("toggle-suspend", "planned"),
        ]
    );
    assert_eq!(report["counts"]["acted"], 0);

    let requests = cluster.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(
            matches!(r.verb.as_str(), "get" | "list"),
            "client dry run only reads: {} {}",
            r.method,
            r.path
        );
        assert_eq!(r.method, "GET");
    }
    assert!(cluster.events().is_empty());
    assert_eq!(cluster.server.helmreleases(), before);
}

#[test]
fn server_dry_run_sends_every_write_with_dry_run_all_and_skips_the_wait() {
    let cluster = Cluster::start();
    seed_every_remedy(&cluster);
    let before = cluster.server.helmreleases();

    let started = Instant::now();
    let out = cluster.run(&["--dry-run=server", "--suspend-wait", "30s", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the suspend wait is skipped"
    );
    let report = json_report(&out);
    assert_eq!(report["dryRun"], "server");
    for action in report["actions"].as_array().into_iter().flatten() {
        assert_eq!(action["result"], "succeeded", "{action}");
    }
    assert_eq!(report["counts"]["acted"], 0, "nothing acted in a dry run");

    let writes = cluster.writes();
    // annotate + status, suspend + resume, resume, clear-marker
    assert_eq!(writes.len(), 6, "{writes:#?}");
    for w in &writes {
        assert_eq!(
            w.resource.as_deref(),
            Some("helmreleases"),
            "no Event: {w:?}"
        );
        assert!(w.dry_run, "dryRun=All on {} {}", w.method, w.path);
        assert_eq!(w.query.get("dryRun").map(String::as_str), Some("All"));
        assert_eq!(w.field_manager.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(w.status, 200);
    }
    assert!(
        writes
            .iter()
            .any(|w| w.subresource.as_deref() == Some("status"))
    );
    assert!(cluster.events().is_empty());
    assert_eq!(cluster.server.helmreleases(), before, "nothing persisted");
    cluster.assert_nothing_denied();
}
