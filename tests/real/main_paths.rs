//! Issue 19 point 7: the product's main paths against the real
//! kube-apiserver, run as the chart's ServiceAccount with `rbac/` applied as
//! it ships (the real RBAC authorizer enforcing it). The stuck states are
//! written by hand as admin (status subresource); no controller runs, so
//! every change is ours or the test's.
//!
//! One testbed for all of it (2 cores): explain, `--dry-run=client`,
//! `--dry-run=server`, branch A and branch B end to end with Events the real
//! validation accepted, the guardrail, more HelmReleases than one page, and
//! a genuine 409 from a real concurrent writer. Every HelmRelease we did not
//! act on keeps its resourceVersion; the audit log shows the ServiceAccount
//! was denied nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use testbed::{Options, Testbed};

use crate::support::{
    self, CORRECTED_AT, HR_API, REQUESTED_AT, SA_USER, SUSPENDED_AT, TOGGLED_AT, action,
    annotation, audit_of, describe, find_condition, get_hr, hr_versions, kubectl, report, run,
    seed_deployed_unknown, seed_hr, seed_pending_install, status_healthy,
};

/// More than the product's page of 500 (src/kube_io/helmreleases.rs PAGE_SIZE).
const MANY: usize = 510;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_paths() {
    let bed = support::start(Options::apiserver_only()).await;
    let sa = support::apply_rbac(&bed).await;

    // recover: one of each branch and a healthy one; guard: three branch-B
    // candidates; race: one branch-A; many: more than a page.
    seed_pending_install(&bed, "recover", "pending").await;
    seed_deployed_unknown(&bed, "recover", "deployed").await;
    seed_hr(
        &bed,
        "recover",
        "healthy",
        Some(status_healthy("recover", "healthy")),
    )
    .await;
    for name in ["g1", "g2", "g3"] {
        seed_deployed_unknown(&bed, "guard", name).await;
    }
    seed_pending_install(&bed, "race", "r1").await;
    seed_many(&bed, "many", MANY).await;
    let before = hr_versions(&bed).await;
    assert_eq!(before.len(), 7 + MANY, "seeded");

    // explain: the decision and the exact patches, no write.
    let mut explained = BTreeMap::new();
    for (name, branch, reason) in [
        ("deployed", "correct-status", "deployed-but-unknown-ready"),
        ("pending", "toggle-suspend", "pending-install-but-deployed"),
    ] {
        let output = run(
            &bed,
            &sa,
            &["explain", &format!("recover/{name}"), "-o", "json"],
        )
        .await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "explain: {}",
            describe(&output)
        );
        let doc = report(&output);
        assert_eq!(doc["branch"], branch, "{doc:#}");
        assert_eq!(doc["reason"], reason, "{doc:#}");
        explained.insert(name, doc);
    }
    let text = run(&bed, &sa, &["explain", "recover/healthy"]).await;
    assert_eq!(text.status.code(), Some(0), "{}", describe(&text));
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("outcome: skip ready"),
        "{}",
        describe(&text)
    );
    assert_eq!(hr_versions(&bed).await, before, "explain changed nothing");

    // --dry-run=client: decides, writes nothing.
    let output = run(
        &bed,
        &sa,
        &["-n", "recover", "--dry-run=client", "-o", "json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = report(&output);
    assert_eq!(doc["dryRun"], "client");
    assert_eq!(
        action(&doc, "recover", "pending")["result"],
        "planned",
        "{doc:#}"
    );
    assert_eq!(
        action(&doc, "recover", "deployed")["result"],
        "planned",
        "{doc:#}"
    );
    assert_eq!(
        hr_versions(&bed).await,
        before,
        "--dry-run=client changed nothing"
    );

    // --dry-run=server: every write sent with dryRun=All and accepted by the
    // real server (admission, validation, RBAC), nothing persisted, no Event.
    let output = run(
        &bed,
        &sa,
        &["-n", "recover", "--dry-run=server", "-o", "json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = report(&output);
    assert_eq!(doc["dryRun"], "server");
    assert_eq!(
        action(&doc, "recover", "pending")["result"],
        "succeeded",
        "{doc:#}"
    );
    assert_eq!(
        action(&doc, "recover", "deployed")["result"],
        "succeeded",
        "{doc:#}"
    );
    assert_eq!(
        hr_versions(&bed).await,
        before,
        "--dry-run=server changed nothing"
    );
    let dry_writes: Vec<_> = audit_of(&bed, SA_USER)
        .into_iter()
        .filter(|e| e["verb"] == "patch")
        .collect();
    assert!(!dry_writes.is_empty(), "the server dry run sent its writes");
    for e in &dry_writes {
        assert!(
            e["requestURI"]
                .as_str()
                .unwrap_or_default()
                .contains("dryRun=All"),
            "a server-dry-run write without dryRun=All: {e:#}"
        );
    }
    assert_eq!(
        events(&bed, "recover").len(),
        0,
        "no Event in a server dry run"
    );

    // Act: branch A toggles, branch B corrects the status.
    let output = run(
        &bed,
        &sa,
        &["-n", "recover", "--suspend-wait", "1s", "-o", "json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = report(&output);
    let a = action(&doc, "recover", "pending");
    assert_eq!(
        (&a["branch"], &a["result"]),
        (&json!("toggle-suspend"), &json!("succeeded")),
        "{doc:#}"
    );
    let b = action(&doc, "recover", "deployed");
    assert_eq!(
        (&b["branch"], &b["result"]),
        (&json!("correct-status"), &json!("succeeded")),
        "{doc:#}"
    );
    assert_eq!(doc["counts"]["acted"], 2, "{doc:#}");

    let pending = get_hr(&bed, "recover", "pending").await;
    assert_ne!(pending["spec"]["suspend"], true, "resumed: {pending:#}");
    assert_eq!(
        annotation(&pending, SUSPENDED_AT),
        None,
        "marker removed: {pending:#}"
    );
    assert!(annotation(&pending, TOGGLED_AT).is_some(), "{pending:#}");
    assert!(annotation(&pending, REQUESTED_AT).is_some(), "{pending:#}");
    let deployed = get_hr(&bed, "recover", "deployed").await;
    assert!(
        annotation(&deployed, CORRECTED_AT).is_some(),
        "{deployed:#}"
    );
    for type_ in ["Ready", "Released"] {
        let c = find_condition(&deployed, type_).unwrap_or_else(|| panic!("{type_}: {deployed:#}"));
        assert_eq!(c["status"], "True", "{type_}: {deployed:#}");
    }
    assert_eq!(
        find_condition(&deployed, "Reconciling"),
        None,
        "{deployed:#}"
    );

    // explain showed exactly the patches the run sent (audit: request bodies).
    for (name, doc) in &explained {
        let shown: Vec<(String, Value)> = doc["patches"]
            .as_array()
            .expect("patches")
            .iter()
            .map(|p| {
                (
                    p["subresource"].as_str().unwrap_or_default().to_owned(),
                    normalized(p["body"].clone()),
                )
            })
            .collect();
        let sent: Vec<(String, Value)> = audit_of(&bed, SA_USER)
            .into_iter()
            .filter(|e| {
                e["verb"] == "patch"
                    && e["objectRef"]["namespace"] == "recover"
                    && e["objectRef"]["name"] == *name
                    && !e["requestURI"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("dryRun")
            })
            .map(|e| {
                (
                    e["objectRef"]["subresource"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    normalized(e["requestObject"].clone()),
                )
            })
            .collect();
        assert_eq!(
            shown, sent,
            "recover/{name}: explain's patches against the run's"
        );
    }

    // Events accepted by the real validation; the real kubectl shows them.
    let seen = events(&bed, "recover");
    for (name, reason) in [
        ("pending", "StuckReleaseToggled"),
        ("deployed", "StuckReleaseCorrected"),
    ] {
        assert!(
            seen.iter()
                .any(|(n, r, t)| n == name && r == reason && t == "Normal"),
            "Event {reason} for recover/{name}; kubectl get events shows {seen:?}"
        );
    }
    let table = kubectl(&bed, &["get", "events", "-n", "recover"]);
    assert!(
        table.contains("StuckReleaseToggled") && table.contains("StuckReleaseCorrected"),
        "{table}"
    );

    // The guardrail: three candidates, --max-actions 2: none acted, exit 1.
    let output = run(
        &bed,
        &sa,
        &["-n", "guard", "--max-actions", "2", "-o", "json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let doc = report(&output);
    assert_eq!(doc["guardrail"]["tripped"], true, "{doc:#}");
    for name in ["g1", "g2", "g3"] {
        assert_eq!(action(&doc, "guard", name)["result"], "planned", "{doc:#}");
    }
    let warned = events(&bed, "guard");
    for name in ["g1", "g2", "g3"] {
        assert!(
            warned
                .iter()
                .any(|(n, r, t)| n == name && r == "RecoveryGuardrailTripped" && t == "Warning"),
            "{warned:?}"
        );
    }

    // More HelmReleases than one page, listed across all namespaces.
    let output = run(&bed, &sa, &["--dry-run", "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = report(&output);
    assert_eq!(doc["counts"]["scanned"], before.len(), "{}", doc["counts"]);
    let lists: Vec<String> = audit_of(&bed, SA_USER)
        .into_iter()
        .filter(|e| {
            e["verb"] == "list"
                && e["objectRef"]["resource"] == "helmreleases"
                && e["objectRef"]["namespace"].is_null()
        })
        .map(|e| e["requestURI"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(lists.len() >= 2, "paged list across namespaces: {lists:#?}");
    assert!(lists.iter().all(|u| u.contains("limit=500")), "{lists:#?}");
    assert!(lists.iter().any(|u| u.contains("continue=")), "{lists:#?}");

    // A genuine 409: while the product waits between suspend and resume, a
    // real writer changes the HelmRelease; the resume meets the server's
    // 409, re-reads, sees its marker and resumes with the new version.
    let child = support::product(&sa.kubeconfig, bed.path())
        .args(["-n", "race", "--suspend-wait", "5s", "-o", "json"])
        .output();
    let racing = tokio::spawn(child);
    let suspended = bed
        .wait(
            "race/r1 suspended by the product",
            Duration::from_secs(30),
            async || {
                let hr = bed
                    .get(HR_API, "HelmRelease", Some("race"), "r1")
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("gone")?;
                if hr["spec"]["suspend"] == true {
                    Ok(hr)
                } else {
                    Err(format!("spec: {}", hr["spec"]))
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    bed.merge_patch(
        HR_API,
        "HelmRelease",
        Some("race"),
        "r1",
        json!({"metadata": {"labels": {"touched-by": "another-writer"}}}),
        false,
    )
    .await
    .expect("the other writer's patch");
    let output = racing.await.expect("joined").expect("product runs");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = report(&output);
    assert_eq!(action(&doc, "race", "r1")["result"], "succeeded", "{doc:#}");
    let r1 = get_hr(&bed, "race", "r1").await;
    assert_eq!(
        r1["metadata"]["labels"]["touched-by"], "another-writer",
        "theirs kept: {r1:#}"
    );
    assert_ne!(r1["spec"]["suspend"], true, "resumed: {r1:#}");
    assert_eq!(annotation(&r1, SUSPENDED_AT), None, "{r1:#}");
    let conflicts: Vec<_> = audit_of(&bed, SA_USER)
        .into_iter()
        .filter(|e| {
            e["verb"] == "patch"
                && e["objectRef"]["namespace"] == "race"
                && e["responseStatus"]["code"] == 409
        })
        .collect();
    assert_eq!(
        conflicts.len(),
        1,
        "one real 409 on the resume: {conflicts:#?}"
    );
    assert_ne!(
        suspended["metadata"]["resourceVersion"],
        r1["metadata"]["resourceVersion"]
    );

    // Every HelmRelease we did not act on keeps its resourceVersion.
    let after = hr_versions(&bed).await;
    let acted = ["recover/pending", "recover/deployed", "race/r1"];
    for (key, version) in &before {
        if acted.contains(&key.as_str()) {
            assert_ne!(after.get(key), Some(version), "{key} was acted on");
        } else {
            assert_eq!(
                after.get(key),
                Some(version),
                "{key} not acted on, yet changed"
            );
        }
    }
    assert_eq!(after.len(), before.len());

    // The real authorizer denied the ServiceAccount nothing, in any run.
    let denied: Vec<_> = audit_of(&bed, SA_USER)
        .into_iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(denied.is_empty(), "denied: {denied:#?}");
}

/// `count` HelmReleases without status in `ns`, created 8 at a time.
async fn seed_many(bed: &Testbed, ns: &str, count: usize) {
    bed.ensure_namespace(ns).await.expect("namespace");
    let results: Vec<anyhow::Result<Value>> = futures::stream::iter(0..count)
        .map(|i| bed.create(support::hr(ns, &format!("hr-{i:04}"))))
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r.expect("HelmRelease created");
    }
}

/// Events of `ns` as the real kubectl shows them: (regarding name, reason, type).
fn events(bed: &Testbed, ns: &str) -> Vec<(String, String, String)> {
    let list: Value =
        serde_json::from_str(&kubectl(bed, &["get", "events", "-n", ns, "-o", "json"]))
            .expect("events as JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&e["involvedObject"]["name"]),
                s(&e["reason"]),
                s(&e["type"]),
            )
        })
        .collect()
}

/// Timestamps and resourceVersions differ between two runs; the rest of a
/// patch must not.
fn normalized(mut body: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') => {
                *s = "<time>".to_owned();
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
