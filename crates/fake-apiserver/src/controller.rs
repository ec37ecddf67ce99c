//! A small, deterministic model of helm-controller (v1.x) towards
//! HelmReleases, so tests can show a HelmRelease *recovers*, not only which
//! writes the product made. Nothing runs in the background: a test calls
//! [`HelmControllerModel::reconcile_triggered`] (what the watch would see) or
//! [`HelmControllerModel::reconcile_all`] (every HelmRelease's interval has
//! elapsed).
//!
//! What it follows (helm-controller's reconcile loop, in our own terms):
//! * Triggers: the watch reacts to a generation change or a new
//!   `reconcile.fluxcd.io/requestedAt`; a status-only write does not trigger.
//! * Suspended HelmReleases are skipped without any write.
//! * Dependencies: every `dependsOn` entry must be Ready=True with
//!   `status.observedGeneration == metadata.generation`, else Ready=False
//!   `DependencyNotReady` and nothing else changes.
//! * Release state from Helm storage (the release Secrets' labels): a
//!   `pending-*` latest release is *locked* (left alone here); no release is
//!   *absent* (an install is not modelled); a `deployed` latest release that
//!   `status.history` does not show (empty, or newest entry `pending-install`
//!   or another version) is adopted: a history snapshot is written and
//!   Released=True; a release `history[0]` already matches is *in sync*.
//! * Summarize: Ready is derived from Released and, when `spec.test.enable`,
//!   TestSuccess; a present Remediated condition wins. Every condition gets
//!   the current `observedGeneration`; Reconciling is removed. In sync with
//!   Ready Unknown and Reconciling True (a lost final write), the reconcile
//!   returns early without writing: SPEC §1's stuck mode stays stuck.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::FakeApiServer;

const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// What one reconcile of one HelmRelease did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `spec.suspend: true`: skipped, nothing written.
    Suspended,
    /// A dependency is not Ready at its current generation: Ready=False.
    DependencyNotReady,
    /// The latest Helm release is `pending-*`: left alone (unlock not modelled).
    Locked,
    /// No release Secret: an install would run (not modelled), nothing written.
    Absent,
    /// A deployed release unknown to `status.history` was adopted; Ready summarised.
    Adopted,
    /// `history[0]` matches the latest release: Ready summarised.
    InSync,
}

/// The latest Helm release of a HelmRelease: version and Helm status label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRelease {
    pub version: u64,
    pub status: String,
}

/// The facts one reconcile depends on besides the HelmRelease itself.
#[derive(Debug, Clone)]
pub struct Facts {
    pub latest: Option<LatestRelease>,
    pub dependencies_ready: bool,
    pub now: String,
}

/// Pure: the outcome and, when the controller writes, the new `status`.
pub fn reconcile(hr: &Value, facts: &Facts) -> (Outcome, Option<Value>) {
    if hr["spec"]["suspend"] == json!(true) {
        return (Outcome::Suspended, None);
    }
    let generation = hr["metadata"]["generation"].as_i64().unwrap_or(0);
    let mut status = hr.get("status").cloned().unwrap_or_else(|| json!({}));
    if !facts.dependencies_ready {
        set_condition(
            &mut status,
            "Ready",
            "False",
            "DependencyNotReady",
            generation,
            &facts.now,
        );
        return (Outcome::DependencyNotReady, Some(status));
    }
    let Some(latest) = &facts.latest else {
        return (Outcome::Absent, None);
    };
    if latest.status.starts_with("pending-") {
        return (Outcome::Locked, None);
    }
    let top = &status["history"][0];
    let in_sync = top["status"] == "deployed" && top["version"].as_u64() == Some(latest.version);
    let outcome = if in_sync {
        if stuck_in_progress(&status) {
            // SPEC §1's stuck mode: the Ready write of the finished run was
            // lost while Reconciling still says True; the in-sync branch
            // returns before anything rewrites Ready.
            return (Outcome::InSync, None);
        }
        Outcome::InSync
    } else if latest.status == "deployed" {
        adopt(hr, &mut status, latest, generation, &facts.now);
        Outcome::Adopted
    } else {
        // failed / superseded latest: remediation is not modelled.
        return (Outcome::Locked, None);
    };
    summarize(hr, &mut status, generation, &facts.now);
    if let Some(requested) = hr["metadata"]["annotations"][REQUESTED_AT].as_str() {
        status["lastHandledReconcileAt"] = json!(requested);
    }
    status["observedGeneration"] = json!(generation);
    status["lastAttemptedGeneration"] = json!(generation);
    (outcome, Some(status))
}

/// Ready Unknown while Reconciling says True: a run whose last write was lost.
fn stuck_in_progress(status: &Value) -> bool {
    let is = |t: &str, v: &str| {
        status["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == v))
    };
    is("Ready", "Unknown") && is("Reconciling", "True")
}

fn adopt(hr: &Value, status: &mut Value, latest: &LatestRelease, generation: i64, now: &str) {
    let ns = hr["metadata"]["namespace"].as_str().unwrap_or_default();
    let snapshot = json!({
        "name": release_name(hr), "namespace": storage_namespace(hr).unwrap_or(ns),
        "version": latest.version, "status": "deployed", "action": "install",
        "chartName": hr["spec"]["chart"]["spec"]["chart"],
        "chartVersion": hr["spec"]["chart"]["spec"]["version"],
        "appVersion": hr["spec"]["chart"]["spec"]["version"],
        "configDigest": "sha256:00", "digest": "sha256:00",
        "firstDeployed": now, "lastDeployed": now,
    });
    status["history"] = json!([snapshot]);
    set_condition(
        status,
        "Released",
        "True",
        "InstallSucceeded",
        generation,
        now,
    );
}

/// Ready from Remediated (when present), else Released, and TestSuccess when
/// tests are enabled; every condition is stamped with `generation`.
fn summarize(hr: &Value, status: &mut Value, generation: i64, now: &str) {
    if let Some(conditions) = status["conditions"].as_array_mut() {
        conditions.retain(|c| c["type"] != "Reconciling");
    }
    let find = |status: &Value, t: &str| {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
    };
    let source = find(status, "Remediated")
        .or_else(|| find(status, "Released"))
        .unwrap_or_else(|| json!({"status": "Unknown", "reason": "Progressing"}));
    let tests_on = hr["spec"]["test"]["enable"] == json!(true);
    let failed_test = find(status, "TestSuccess").filter(|c| tests_on && c["status"] == "False");
    let (value, reason) = match failed_test {
        Some(t) => (
            "False".to_string(),
            t["reason"].as_str().unwrap_or("TestFailed").to_string(),
        ),
        None => (
            source["status"].as_str().unwrap_or("Unknown").to_string(),
            source["reason"]
                .as_str()
                .unwrap_or("Progressing")
                .to_string(),
        ),
    };
    set_condition(status, "Ready", &value, &reason, generation, now);
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for c in conditions {
            c["observedGeneration"] = json!(generation);
        }
    }
}

fn set_condition(
    status: &mut Value,
    type_: &str,
    value: &str,
    reason: &str,
    generation: i64,
    now: &str,
) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let message = format!("{type_} is {value}: {reason}");
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            if c["status"] != value {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(value);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
            c["observedGeneration"] = json!(generation);
        }
        None => conditions.insert(
            0,
            json!({"type": type_, "status": value, "reason": reason, "message": message,
                   "lastTransitionTime": now, "observedGeneration": generation}),
        ),
    }
}

/// `spec.releaseName`, else `<targetNamespace>-<name>`, else the name
/// (the 53-character shortening is not modelled).
pub fn release_name(hr: &Value) -> String {
    let name = hr["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(r) = hr["spec"]["releaseName"].as_str() {
        return r.to_string();
    }
    match hr["spec"]["targetNamespace"].as_str() {
        Some(t) => format!("{t}-{name}"),
        None => name.to_string(),
    }
}

fn storage_namespace(hr: &Value) -> Option<&str> {
    hr["status"]["storageNamespace"]
        .as_str()
        .or_else(|| hr["spec"]["storageNamespace"].as_str())
        .or_else(|| hr["metadata"]["namespace"].as_str())
}

fn key(hr: &Value) -> (String, String) {
    (
        hr["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        hr["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn trigger_of(hr: &Value) -> (i64, Option<String>) {
    (
        hr["metadata"]["generation"].as_i64().unwrap_or(0),
        hr["metadata"]["annotations"][REQUESTED_AT]
            .as_str()
            .map(str::to_string),
    )
}

/// What the watch last handled per HelmRelease: generation and requestedAt.
#[derive(Debug, Default)]
pub struct HelmControllerModel {
    seen: BTreeMap<(String, String), (i64, Option<String>)>,
}

impl HelmControllerModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every HelmRelease's current generation and requestedAt as
    /// handled without reconciling: the state a controller leaves behind
    /// after the run that got stuck.
    pub fn mark_handled(&mut self, server: &FakeApiServer) {
        for hr in server.helmreleases() {
            let trigger = trigger_of(&hr);
            self.seen.insert(key(&hr), trigger);
        }
    }

    /// Reconciles the HelmReleases whose generation or requestedAt changed
    /// since this model last handled them (a first sight counts, as the
    /// informer's initial list does). Answers `(namespace, name, outcome)`.
    pub fn reconcile_triggered(
        &mut self,
        server: &FakeApiServer,
    ) -> Vec<(String, String, Outcome)> {
        self.reconcile_where(server, true)
    }

    /// Reconciles every HelmRelease, as when each one's interval elapsed.
    pub fn reconcile_all(&mut self, server: &FakeApiServer) -> Vec<(String, String, Outcome)> {
        self.reconcile_where(server, false)
    }

    fn reconcile_where(
        &mut self,
        server: &FakeApiServer,
        only_triggered: bool,
    ) -> Vec<(String, String, Outcome)> {
        let mut done = Vec::new();
        let mut hrs = server.helmreleases();
        hrs.sort_by_key(key);
        for hr in hrs {
            let k = key(&hr);
            // Re-read: an earlier reconcile in this pass may have changed a dependency.
            let Some(hr) = server.helmrelease(&k.0, &k.1) else {
                continue;
            };
            let trigger = (
                hr["metadata"]["generation"].as_i64().unwrap_or(0),
                hr["metadata"]["annotations"][REQUESTED_AT]
                    .as_str()
                    .map(str::to_string),
            );
            if only_triggered && self.seen.get(&k) == Some(&trigger) {
                continue;
            }
            self.seen.insert(k.clone(), trigger);
            let facts = Facts {
                latest: latest_release(server, &hr),
                dependencies_ready: dependencies_ready(server, &hr),
                now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            let (outcome, status) = reconcile(&hr, &facts);
            if let Some(status) = status {
                let mut next = hr.clone();
                next["status"] = status;
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                // The model writes like the controller's status patch; apply
                // keeps the generation as given and bumps resourceVersion.
                if let Err(e) = server.apply(next) {
                    tracing::warn!("helm-controller model: writing {}/{}: {e:#}", k.0, k.1);
                }
            }
            done.push((k.0, k.1, outcome));
        }
        done
    }

    /// Reconciles until a triggered pass and an interval pass write nothing
    /// new (at most `max_passes` interval passes). Answers the last outcomes.
    pub fn reconcile_until_quiet(
        &mut self,
        server: &FakeApiServer,
        max_passes: usize,
    ) -> Vec<(String, String, Outcome)> {
        let mut last = Vec::new();
        for _ in 0..max_passes {
            let before = server.helmreleases();
            last = self.reconcile_all(server);
            if strip_times(&before) == strip_times(&server.helmreleases()) {
                break;
            }
        }
        last
    }
}

/// Objects without resourceVersion and timestamps, to compare passes.
fn strip_times(hrs: &[Value]) -> Vec<Value> {
    hrs.iter()
        .map(|hr| {
            let mut h = hr.clone();
            if let Some(m) = h["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            if let Some(cs) = h["status"]["conditions"].as_array_mut() {
                for c in cs {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("lastTransitionTime");
                    }
                }
            }
            h
        })
        .collect()
}

fn latest_release(server: &FakeApiServer, hr: &Value) -> Option<LatestRelease> {
    let name = release_name(hr);
    server
        .list("v1", "secrets", storage_namespace(hr))
        .iter()
        .filter(|s| {
            let l = &s["metadata"]["labels"];
            l["owner"] == "helm" && l["name"] == name.as_str()
        })
        .filter_map(|s| {
            let l = &s["metadata"]["labels"];
            Some(LatestRelease {
                version: l["version"].as_str()?.parse().ok()?,
                status: l["status"].as_str().unwrap_or_default().to_string(),
            })
        })
        .max_by_key(|r| r.version)
}

fn dependencies_ready(server: &FakeApiServer, hr: &Value) -> bool {
    let own_ns = hr["metadata"]["namespace"].as_str().unwrap_or_default();
    hr["spec"]["dependsOn"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|d| {
            let ns = d["namespace"].as_str().unwrap_or(own_ns);
            let Some(name) = d["name"].as_str() else {
                return false;
            };
            server
                .helmrelease(ns, name)
                .is_some_and(|dep| is_ready_now(&dep))
        })
}

/// Ready=True, observed at the current generation.
pub fn is_ready_now(hr: &Value) -> bool {
    let ready = hr["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    ready && hr["status"]["observedGeneration"] == hr["metadata"]["generation"]
}

impl FakeApiServer {
    /// Stuck mode "Ready write lost": a successful install of `name` whose
    /// release Secret, history snapshot and Released=True were written, but
    /// whose final Ready=True write was lost (Ready stays Unknown).
    pub fn install_losing_ready_write(&self, hr: Value, since: &str) -> anyhow::Result<Value> {
        self.install_with(hr, since, true)
    }

    /// Stuck mode "lease lost mid-install": Helm finished (its Secret says
    /// `deployed`), but the controller lost its lease before recording the
    /// release: history empty, Ready Unknown.
    pub fn install_losing_lease(&self, hr: Value, since: &str) -> anyhow::Result<Value> {
        self.install_with(hr, since, false)
    }

    fn install_with(&self, hr: Value, since: &str, recorded: bool) -> anyhow::Result<Value> {
        let hr = self.apply(hr)?;
        let ns = storage_namespace(&hr).unwrap_or("default").to_string();
        let name = release_name(&hr);
        self.apply(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"namespace": ns, "name": format!("sh.helm.release.v1.{name}.v1"),
                "labels": {"owner": "helm", "name": name, "version": "1", "status": "deployed"}},
            "data": {"release": "c3R1Yg=="},
        }))?;
        let generation = hr["metadata"]["generation"].as_i64().unwrap_or(1);
        let mut status = json!({"storageNamespace": ns, "lastAttemptedGeneration": generation,
                                "conditions": []});
        set_condition(
            &mut status,
            "Ready",
            "Unknown",
            "Progressing",
            generation,
            since,
        );
        set_condition(
            &mut status,
            "Reconciling",
            "True",
            "Progressing",
            generation,
            since,
        );
        if recorded {
            let latest = LatestRelease {
                version: 1,
                status: "deployed".into(),
            };
            adopt(&hr, &mut status, &latest, generation, since);
            status["observedGeneration"] = json!(generation);
        }
        let mut next = hr;
        next["status"] = status;
        if let Some(m) = next["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.apply(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hr(conditions: Value, history: Value, test_enable: bool) -> Value {
        json!({"metadata": {"namespace": "a", "name": "x", "generation": 2},
               "spec": {"test": {"enable": test_enable}},
               "status": {"observedGeneration": 1, "history": history, "conditions": conditions}})
    }

    fn facts(version: u64, status: &str, deps: bool) -> Facts {
        Facts {
            latest: Some(LatestRelease {
                version,
                status: status.into(),
            }),
            dependencies_ready: deps,
            now: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn ready(status: &Value) -> (String, String) {
        let c = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        (
            c["status"].as_str().unwrap_or("-").into(),
            c["reason"].as_str().unwrap_or("-").into(),
        )
    }

    /// What, HelmRelease, facts, outcome, Ready (status, reason) written.
    type Row = (
        &'static str,
        Value,
        Facts,
        Outcome,
        Option<(&'static str, &'static str)>,
    );

    #[test]
    fn outcome_table() {
        let released =
            json!([{"type": "Released", "status": "True", "reason": "InstallSucceeded"}]);
        let deployed = json!([{"version": 1, "status": "deployed"}]);
        let pending = json!([{"version": 1, "status": "pending-install"}]);
        let test_failed = json!([
            {"type": "Ready", "status": "True", "reason": "InstallSucceeded"},
            {"type": "Released", "status": "True", "reason": "InstallSucceeded"},
            {"type": "TestSuccess", "status": "False", "reason": "TestFailed"}]);
        let remediated = json!([
            {"type": "Released", "status": "True", "reason": "InstallSucceeded"},
            {"type": "Remediated", "status": "False", "reason": "RollbackFailed"}]);
        let rows: Vec<Row> = vec![
            (
                "in sync, Released True",
                hr(released.clone(), deployed.clone(), false),
                facts(1, "deployed", true),
                Outcome::InSync,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "no Released: Unknown",
                hr(json!([]), deployed.clone(), false),
                facts(1, "deployed", true),
                Outcome::InSync,
                Some(("Unknown", "Progressing")),
            ),
            (
                "tests on, TestSuccess False",
                hr(test_failed.clone(), deployed.clone(), true),
                facts(1, "deployed", true),
                Outcome::InSync,
                Some(("False", "TestFailed")),
            ),
            (
                "tests off, TestSuccess False ignored",
                hr(test_failed, deployed.clone(), false),
                facts(1, "deployed", true),
                Outcome::InSync,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "Remediated wins",
                hr(remediated, deployed.clone(), false),
                facts(1, "deployed", true),
                Outcome::InSync,
                Some(("False", "RollbackFailed")),
            ),
            (
                "empty history adopted",
                hr(json!([]), json!([]), false),
                facts(1, "deployed", true),
                Outcome::Adopted,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "pending-install history adopted",
                hr(json!([]), pending, false),
                facts(1, "deployed", true),
                Outcome::Adopted,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "newer deployed release adopted",
                hr(released.clone(), deployed.clone(), false),
                facts(2, "deployed", true),
                Outcome::Adopted,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "pending release locked",
                hr(released.clone(), deployed.clone(), false),
                facts(2, "pending-upgrade", true),
                Outcome::Locked,
                None,
            ),
            (
                "dependency not ready",
                hr(released.clone(), deployed.clone(), false),
                facts(1, "deployed", false),
                Outcome::DependencyNotReady,
                Some(("False", "DependencyNotReady")),
            ),
        ];
        for (what, object, facts, outcome, want) in rows {
            let (got, status) = reconcile(&object, &facts);
            assert_eq!(got, outcome, "{what}");
            let got_ready = status.as_ref().map(ready);
            assert_eq!(
                got_ready,
                want.map(|(s, r)| (s.to_string(), r.to_string())),
                "{what}"
            );
            if let Some(status) = status.filter(|_| outcome != Outcome::DependencyNotReady) {
                assert_eq!(status["observedGeneration"], 2, "{what}");
                assert!(
                    status["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .all(|c| c["observedGeneration"] == 2),
                    "{what}"
                );
            }
        }
        let mut suspended = hr(released, deployed, false);
        suspended["spec"]["suspend"] = json!(true);
        assert_eq!(
            reconcile(&suspended, &facts(1, "deployed", true)),
            (Outcome::Suspended, None)
        );
        let absent = Facts {
            latest: None,
            ..facts(1, "deployed", true)
        };
        assert_eq!(
            reconcile(&hr(json!([]), json!([]), false), &absent),
            (Outcome::Absent, None)
        );
    }
}
