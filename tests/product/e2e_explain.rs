//! `explain` (SPEC §10) against the fake API server: it reads one
//! HelmRelease (and Helm storage only when the decision needs it), never
//! writes, and shows exactly the patches a real run then sends.

use crate::common::{Cluster, Hr, describe, helm_secret, stdout, stuck_deployed, stuck_pending};
use serde_json::Value;

fn explain_json(cluster: &Cluster, target: &str) -> Value {
    let output = cluster.run(&["explain", target, "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("explain prints JSON ({e}): {}", describe(&output)))
}

/// Timestamps and resourceVersions differ between two runs; everything else
/// of a patch must not.
fn normalized(mut body: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') => {
                *s = "<time>".to_string();
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if key == "resourceVersion" {
                        *value = Value::from("<rv>");
                    } else {
                        walk(value);
                    }
                }
            }
            _ => {}
        }
    }
    walk(&mut body);
    body
}

#[test]
fn explain_shows_the_patches_a_run_then_sends_for_every_branch() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_pending("apps", "api"));
    cluster.seed([
        Hr::interrupted_toggle("apps", "db").build(),
        helm_secret("apps", "db", 1, "deployed"),
        Hr::stale_marker("apps", "cache").build(),
    ]);
    let expected = [
        ("web", "correct-status", "deployed-but-unknown-ready"),
        ("api", "toggle-suspend", "pending-install-but-deployed"),
        ("db", "resume", "interrupted-toggle"),
        ("cache", "clear-marker", "stale-marker"),
    ];
    let mut explained = Vec::new();
    for (name, branch, reason) in expected {
        let doc = explain_json(&cluster, &format!("apps/{name}"));
        assert_eq!(doc["branch"], branch, "{doc:#}");
        assert_eq!(doc["reason"], reason, "{doc:#}");
        explained.push((name, doc));
    }
    assert!(
        cluster.writes().is_empty(),
        "explain wrote: {:#?}",
        cluster.writes()
    );

    let output = cluster.run(&["--suspend-wait", "1s"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for (name, doc) in explained {
        let sent: Vec<(String, Value)> = cluster
            .hr_writes()
            .into_iter()
            .filter(|w| w.name.as_deref() == Some(name))
            .map(|w| {
                (
                    w.subresource.unwrap_or_default(),
                    normalized(w.body.unwrap_or_default()),
                )
            })
            .collect();
        let shown: Vec<(String, Value)> = doc["patches"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|p| {
                        (
                            p["subresource"].as_str().unwrap_or_default().to_string(),
                            normalized(p["body"].clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            shown, sent,
            "apps/{name}: explain's patches against the run's"
        );
    }
}

#[test]
fn explaining_a_healthy_helmrelease_reads_no_helm_storage() {
    let cluster = Cluster::start();
    cluster.seed([
        Hr::healthy("apps", "web").build(),
        helm_secret("apps", "web", 1, "deployed"),
    ]);
    let output = cluster.run(&["explain", "-n", "apps", "web"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("MATCH ready"), "{text}");
    assert!(text.contains("outcome: skip ready"), "{text}");
    assert!(text.contains("Helm storage: not read"), "{text}");
    let requests = cluster.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.resource.as_deref() != Some("secrets")),
        "{requests:#?}"
    );
    let gets: Vec<_> = requests
        .iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases"))
        .map(|r| (r.verb.as_str(), r.name.as_deref()))
        .collect();
    assert_eq!(gets, [("get", Some("web"))]);
    cluster.assert_nothing_denied();
}

#[test]
fn explaining_a_stuck_helmrelease_reads_its_helm_storage() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    let doc = explain_json(&cluster, "apps/web");
    assert_eq!(doc["facts"]["helmStorage"]["read"], true);
    assert_eq!(doc["facts"]["helmStorage"]["latest"]["version"], 1);
    assert_eq!(doc["facts"]["helmStorage"]["latest"]["status"], "deployed");
    assert_eq!(doc["facts"]["ready"]["status"], "Unknown");
    assert_eq!(doc["facts"]["reconciling"]["status"], "True");
    let reasons: Vec<&str> = doc["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons.first(), Some(&"deleting"));
    assert_eq!(reasons.last(), Some(&"deployed-but-unknown-ready"));
    assert_eq!(reasons.len(), 14);
    let secret_lists: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .map(|r| (r.verb, r.namespace, r.query.get("labelSelector").cloned()))
        .collect();
    assert_eq!(
        secret_lists,
        [(
            "list".to_string(),
            Some("apps".to_string()),
            Some("owner=helm,name=web".to_string())
        )]
    );
    cluster.assert_nothing_denied();
}

#[test]
fn explaining_a_missing_helmrelease_says_so_and_exits_4() {
    let cluster = Cluster::start();
    let output = cluster.run(&["explain", "apps/nope"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HelmRelease apps/nope not found"),
        "{stderr}"
    );
    assert!(stderr.contains("kubectl get helmreleases"), "{stderr}");
}

#[test]
fn explain_without_a_namespace_is_a_usage_error() {
    let cluster = Cluster::start();
    let output = cluster.run(&["explain", "web"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(cluster.requests().is_empty());
}
