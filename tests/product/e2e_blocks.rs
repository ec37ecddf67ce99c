//! `blocks` (SPEC §10) through the real binary: what each stuck HelmRelease
//! holds back, from the `dependsOn` of the same list — no extra request.

use crate::common::{Cluster, Hr, describe, json_report, stdout, stuck_deployed, stuck_pending};
use serde_json::{Value, json};

fn depends_on(hr: Hr, deps: Value) -> Value {
    let mut json = hr.build();
    json["spec"]["dependsOn"] = deps;
    json
}

fn seeded() -> Cluster {
    let cluster = Cluster::start();
    // db (stuck) ← api (not ready) ← front (healthy); ops/mon → apps/db;
    // cache (stuck) ↔ queue: a cycle.
    cluster.seed(stuck_deployed("apps", "db"));
    cluster.seed(stuck_pending("apps", "cache"));
    cluster.seed([
        depends_on(
            Hr::pending_install("apps", "api", 1),
            json!([{"name": "db"}]),
        ),
        depends_on(Hr::healthy("apps", "front"), json!([{"name": "api"}])),
        depends_on(
            Hr::healthy("ops", "mon"),
            json!([{"name": "db", "namespace": "apps"}]),
        ),
        depends_on(Hr::healthy("apps", "queue"), json!([{"name": "cache"}])),
    ]);
    let mut cache = cluster.hr("apps", "cache");
    cache["spec"]["dependsOn"] = json!([{"name": "queue"}]);
    cluster.seed([cache]);
    cluster
}

#[test]
fn each_action_and_listed_skip_lists_what_depends_on_it_transitively() {
    let cluster = seeded();
    let output = cluster.run(&["--dry-run", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = json_report(&output);
    let blocks = |list: &str, name: &str| {
        report[list]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == name))
            .map(|i| i["blocks"].clone())
            .unwrap_or_else(|| panic!("{name} in {list}: {report:#}"))
    };
    assert_eq!(
        blocks("actions", "db"),
        json!(["apps/api", "apps/front", "ops/mon"])
    );
    assert_eq!(blocks("actions", "cache"), json!(["apps/queue"]));
    assert_eq!(blocks("skipped", "api"), json!(["apps/front"]));
    // Only the list: no get of a HelmRelease, no extra request for blocks.
    let hr_verbs: Vec<String> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases"))
        .map(|r| r.verb)
        .collect();
    assert!(hr_verbs.iter().all(|v| v == "list"), "{hr_verbs:?}");
}

#[test]
fn the_text_report_counts_blocks_only_when_there_are_any() {
    let cluster = seeded();
    cluster.seed(stuck_deployed("apps", "lonely"));
    let output = cluster.run(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .to_string()
    };
    assert_eq!(
        line("apps/db "),
        "apps/db correct-status deployed-but-unknown-ready planned blocks=3"
    );
    assert_eq!(
        line("apps/lonely "),
        "apps/lonely correct-status deployed-but-unknown-ready planned"
    );
    assert_eq!(line("apps/api "), "apps/api skip within-threshold blocks=1");
}
