//! A small, deterministic model of helm-controller (v1.x, `api/v2`) towards
//! HelmReleases, so tests and the demo can show a HelmRelease *recovers*, not
//! only which writes the product made.
//!
//! Followed: fluxcd/helm-controller's `main` line as stored in the reference
//! index (Helm v4 imports, `AdditiveCELDependencyCheck`; the v1.6 line the
//! issue names); see docs/fake-apiserver.md for the files and what is left
//! out. Every rule below names the upstream function it stands for; the code
//! is our own.
//!
//! Nothing runs on its own unless the binary is started with
//! `--helm-controller`: a test calls [`HelmControllerModel::reconcile_triggered`]
//! (what the watch and the controller's own requeues deliver) or
//! [`HelmControllerModel::reconcile_all`] (every HelmRelease's interval has
//! elapsed).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::FakeApiServer;

const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
/// `conditions.MarkReconciling` in `reconcileRelease`'s prelude.
const PREREQUISITES: &str = "Fulfilling prerequisites";
/// `timeoutForAction` with the default `spec.timeout` (5m0s).
const TIMEOUT: &str = "5m0s";
/// Condition types helm-controller summarises into Ready (`summarize`).
const REMEDIATED: &str = "Remediated";
const RELEASED: &str = "Released";
const TEST_SUCCESS: &str = "TestSuccess";

/// What one reconcile of one HelmRelease did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `spec.suspend: true` (`Reconcile` returns early; its deferred patch
    /// still records observedGeneration and lastHandledReconcileAt).
    Suspended,
    /// `checkDependencies` failed: Ready=False `DependencyNotReady`,
    /// observedGeneration untouched, requeued after the dependency interval.
    DependencyNotReady,
    /// `DetermineReleaseState` → Locked (a `pending-*` latest release, however
    /// old): the Unlock action marked it `failed` in Helm storage
    /// ([`Decision::unlocked`]) with Released=False `PendingRelease`. When the
    /// history held no snapshot of that revision (a controller killed
    /// mid-install), the same reconcile went on to Unmanaged and upgraded
    /// ([`Decision::upgraded_to`], Ready=True); otherwise the release is now
    /// `failed`, whose remediation is not modelled (Ready=False, written
    /// without observedGeneration).
    Unlocked,
    /// → Absent (no release, or an uninstalled one); the Install action is
    /// not modelled: nothing written.
    Absent,
    /// → Unmanaged (history empty, or `history[0]` does not observe the latest
    /// release): history cleared, an upgrade written as a new revision, then
    /// in sync and summarised (`actionForState`'s Unmanaged case).
    Upgraded,
    /// → InSync: Reconciling removed, Ready summarised.
    InSync,
    /// A state whose action the model does not run (`Failed` → remediation,
    /// `Untested` → test): nothing written.
    NotModelled(&'static str),
    /// `DetermineReleaseState` returned an error (a latest release whose
    /// status it cannot place): Ready=False `StateError`.
    StateError,
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
    /// `checkDependencies`' error for the first dependency not Ready, if any.
    pub dependency_not_ready: Option<String>,
    pub now: String,
}

/// What the pure reconcile decided: the outcome, the new `status` when the
/// controller writes one, and the revision an upgrade wrote to Helm storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    pub status: Option<Value>,
    pub upgraded_to: Option<u64>,
    /// The `pending-*` revision the Unlock action set `failed`.
    pub unlocked: Option<u64>,
}

impl Decision {
    fn no_write(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            status: None,
            upgraded_to: None,
            unlocked: None,
        }
    }
}

/// `DetermineReleaseState`'s statuses the model distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Absent,
    Locked,
    Unmanaged,
    InSync,
    Untested,
    Failed,
    Unknown,
}

/// Models `DetermineReleaseState` on labels only: the snapshot digest the
/// controller verifies (`VerifyReleaseObject`) covers the release's version
/// and status, so a `history[0]` with another version or status (e.g.
/// `pending-install` against a now `deployed` release) is "not observed" →
/// Unmanaged. Chart/values drift (OutOfSync) and cluster drift are not
/// modelled.
fn release_state(hr: &Value, status: &Value, latest: Option<&LatestRelease>) -> State {
    let Some(latest) = latest else {
        return State::Absent;
    };
    if latest.status.starts_with("pending-") {
        return State::Locked;
    }
    let history = status["history"].as_array().map_or(&[][..], Vec::as_slice);
    let Some(cur) = history.first() else {
        return if latest.status == "uninstalled" {
            State::Absent
        } else {
            State::Unmanaged
        };
    };
    if cur["version"].as_u64() != Some(latest.version) || cur["status"] != latest.status.as_str() {
        return State::Unmanaged;
    }
    match latest.status.as_str() {
        "failed" => State::Failed,
        "uninstalled" => State::Absent,
        "deployed" => {
            if hr["spec"]["test"]["enable"] == json!(true) && cur.get("testHooks").is_none() {
                State::Untested
            } else {
                State::InSync
            }
        }
        _ => State::Unknown,
    }
}

/// Pure: one reconcile of `hr` as `HelmReleaseReconciler.Reconcile` runs it.
pub fn reconcile(hr: &Value, facts: &Facts) -> Decision {
    let generation = hr["metadata"]["generation"].as_i64().unwrap_or(0);
    let now = facts.now.as_str();
    let mut status = hr.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    // `Reconcile`: a suspended object returns early with a zero result, so
    // the deferred patch still stamps observedGeneration.
    if hr["spec"]["suspend"] == json!(true) {
        finish(hr, &mut status, Some(generation));
        return Decision {
            outcome: Outcome::Suspended,
            status: Some(status),
            upgraded_to: None,
            unlocked: None,
        };
    }
    // `reconcileRelease`'s prelude, patched before anything else.
    let mut prelude = status.clone();
    mark_reconciling(&mut prelude, "Progressing", PREREQUISITES, generation, now);
    set_condition(
        &mut prelude,
        "Ready",
        "Unknown",
        "Progressing",
        PREREQUISITES,
        generation,
        now,
    );
    // `checkDependencies`: the wait error keeps observedGeneration as it was.
    if let Some(dependency) = &facts.dependency_not_ready {
        set_condition(
            &mut prelude,
            "Ready",
            "False",
            "DependencyNotReady",
            dependency,
            generation,
            now,
        );
        finish(hr, &mut prelude, None);
        return Decision {
            outcome: Outcome::DependencyNotReady,
            status: Some(prelude),
            upgraded_to: None,
            unlocked: None,
        };
    }
    // The actions the model does not run write nothing at all (documented):
    // look at the state before committing to the prelude.
    match release_state(hr, &status, facts.latest.as_ref()) {
        State::Absent => return Decision::no_write(Outcome::Absent),
        State::Failed => return Decision::no_write(Outcome::NotModelled("remediation")),
        State::Untested => return Decision::no_write(Outcome::NotModelled("test")),
        State::Locked | State::Unknown | State::Unmanaged | State::InSync => {}
    }
    let mut status = prelude;
    status["lastAttemptedGeneration"] = json!(generation);
    if let Some(ns) = storage_namespace(hr) {
        status["storageNamespace"] = json!(ns);
    }
    // `AtomicRelease.Reconcile`: determine the state, run its action, again,
    // each action type at most once.
    let mut latest = facts.latest.clone();
    let mut upgraded_to = None;
    let mut unlocked = None;
    loop {
        match release_state(hr, &status, latest.as_ref()) {
            State::InSync => break,
            State::Locked if unlocked.is_none() => {
                // `actionForState`, Locked → `Unlock.Reconcile`: the stale
                // pending release becomes `failed`; a history snapshot of it
                // follows (`observeUnlock`); Released=False PendingRelease and
                // the summary. Then the loop looks again.
                let Some(stale) = latest.clone() else { break };
                let snapshot_of_it = status["history"]
                    .as_array_mut()
                    .and_then(|h| h.iter_mut().find(|s| s["version"] == stale.version));
                if let Some(snap) = snapshot_of_it {
                    snap["status"] = json!("failed");
                }
                let chart = &hr["spec"]["chart"]["spec"];
                let message = format!(
                    "Unlocked Helm release {}/{}.v{} with chart {}@{} in {} state",
                    release_namespace(hr),
                    release_name(hr),
                    stale.version,
                    chart["chart"].as_str().unwrap_or_default(),
                    chart["version"].as_str().unwrap_or_default(),
                    stale.status,
                );
                set_condition(
                    &mut status,
                    RELEASED,
                    "False",
                    "PendingRelease",
                    &message,
                    generation,
                    now,
                );
                summarize(hr, &mut status, generation, now);
                latest = Some(LatestRelease {
                    version: stale.version,
                    status: "failed".into(),
                });
                unlocked = Some(stale.version);
            }
            State::Failed if unlocked.is_some() => {
                // Remediation of the now failed release is not modelled.
                finish(hr, &mut status, None);
                return Decision {
                    outcome: Outcome::Unlocked,
                    status: Some(status),
                    upgraded_to,
                    unlocked,
                };
            }
            State::Unmanaged if upgraded_to.is_none() => {
                // `actionForState`, Unmanaged: `ClearHistory`, then Upgrade.
                let version = latest.as_ref().map_or(1, |l| l.version + 1);
                upgrade(hr, &mut status, version, generation, now);
                latest = Some(LatestRelease {
                    version,
                    status: "deployed".into(),
                });
                upgraded_to = Some(version);
            }
            State::Unknown => {
                // `DetermineReleaseState` error → Ready=False StateError;
                // the error return keeps observedGeneration.
                set_condition(
                    &mut status,
                    "Ready",
                    "False",
                    "StateError",
                    "Could not determine release state",
                    generation,
                    now,
                );
                finish(hr, &mut status, None);
                return Decision {
                    outcome: Outcome::StateError,
                    status: Some(status),
                    upgraded_to,
                    unlocked,
                };
            }
            // After our own upgrade only a test can follow (not modelled):
            // leave the progress as the upgrade's patch had it.
            _ => {
                finish(hr, &mut status, None);
                return Decision {
                    outcome: Outcome::Upgraded,
                    status: Some(status),
                    upgraded_to,
                    unlocked,
                };
            }
        }
    }
    // `actionForState`, InSync: a true Remediated turns into Released.
    if condition_is(&status, REMEDIATED, "True") {
        let version = status["history"][0]["version"].as_u64().unwrap_or(0);
        delete_condition(&mut status, RELEASED);
        rename_condition(
            &mut status,
            REMEDIATED,
            RELEASED,
            "UpgradeSucceeded",
            generation,
        );
        let message = success_message(hr, "upgrade", version);
        if let Some(c) = find_mut(&mut status, RELEASED) {
            c["message"] = json!(message);
        }
    }
    // `AtomicRelease.Reconcile`, no next action: not reconciling any more,
    // and always summarise.
    delete_condition(&mut status, "Reconciling");
    summarize(hr, &mut status, generation, now);
    finish(hr, &mut status, Some(generation));
    Decision {
        outcome: if unlocked.is_some() {
            Outcome::Unlocked
        } else if upgraded_to.is_some() {
            Outcome::Upgraded
        } else {
            Outcome::InSync
        },
        status: Some(status),
        upgraded_to,
        unlocked,
    }
}

/// `Reconcile`'s deferred patch: `lastHandledReconcileAt` from the request
/// annotation, and observedGeneration only for a clean (zero/interval) result.
fn finish(hr: &Value, status: &mut Value, observed: Option<i64>) {
    if let Some(requested) = hr["metadata"]["annotations"][REQUESTED_AT].as_str() {
        status["lastHandledReconcileAt"] = json!(requested);
    }
    if let Some(generation) = observed {
        status["observedGeneration"] = json!(generation);
    }
}

/// A successful Helm upgrade as the `Upgrade` action records it: Reconciling
/// and Ready Unknown before the run, then the observation as `history[0]`
/// (after `ClearHistory`) and Released=True `UpgradeSucceeded`.
fn upgrade(hr: &Value, status: &mut Value, version: u64, generation: i64, now: &str) {
    let running = format!("Running 'upgrade' action with timeout of {TIMEOUT}");
    mark_reconciling(status, "Progressing", &running, generation, now);
    set_condition(
        status,
        "Ready",
        "Unknown",
        "Progressing",
        &running,
        generation,
        now,
    );
    status["history"] = json!([snapshot(hr, version, "upgrade", now)]);
    status["lastAttemptedReleaseAction"] = json!("upgrade");
    set_condition(
        status,
        RELEASED,
        "True",
        "UpgradeSucceeded",
        &success_message(hr, "upgrade", version),
        generation,
        now,
    );
}

fn success_message(hr: &Value, action: &str, version: u64) -> String {
    let chart = &hr["spec"]["chart"]["spec"];
    format!(
        "Helm {action} succeeded for release {}/{}.v{version} with chart {}@{}",
        release_namespace(hr),
        release_name(hr),
        chart["chart"].as_str().unwrap_or_default(),
        chart["version"].as_str().unwrap_or_default(),
    )
}

fn snapshot(hr: &Value, version: u64, action: &str, now: &str) -> Value {
    let chart = &hr["spec"]["chart"]["spec"];
    json!({
        "name": release_name(hr), "namespace": release_namespace(hr),
        "version": version, "status": "deployed", "action": action,
        "chartName": chart["chart"], "chartVersion": chart["version"],
        "appVersion": chart["version"],
        "configDigest": "sha256:00", "digest": "sha256:00",
        "firstDeployed": now, "lastDeployed": now,
    })
}

/// `summarize`: Ready from the summary conditions sorted by observed
/// generation and priority (Remediated, then TestSuccess when tests are on
/// and failures not ignored, then Released), the first one winning; a
/// Remediated winner means False. With no summary condition the first
/// condition in `lexicographicLess` order wins (Stalled if any, else Ready
/// itself). Only Ready is stamped with the current generation here.
fn summarize(hr: &Value, status: &mut Value, generation: i64, now: &str) {
    let test = &hr["spec"]["test"];
    let tests_on = test["enable"] == json!(true);
    let summary: &[&str] = if tests_on && test["ignoreFailures"] != json!(true) {
        &[REMEDIATED, TEST_SUCCESS, RELEASED]
    } else {
        &[REMEDIATED, RELEASED]
    };
    if !tests_on {
        delete_condition(status, TEST_SUCCESS);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    if conditions.is_empty() {
        return;
    }
    let pos = |c: &Value| summary.iter().position(|t| c["type"] == *t);
    let og = |c: &Value| c["observedGeneration"].as_i64().unwrap_or(0);
    // The upstream comparator, in a stable insertion sort (what a stable
    // sort does for this few elements): summary conditions before the
    // others; among them, i before j when i is at least as new and of
    // higher priority.
    let less = |i: &Value, j: &Value| match (pos(i), pos(j)) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(pi), Some(pj)) => og(i) >= og(j) && pi < pj,
    };
    for i in 1..conditions.len() {
        let mut j = i;
        while j > 0 && less(&conditions[j], &conditions[j - 1]) {
            conditions.swap(j, j - 1);
            j -= 1;
        }
    }
    let first = conditions[0].clone();
    let value = if first["type"] == REMEDIATED {
        "False"
    } else {
        first["status"].as_str().unwrap_or("Unknown")
    };
    if value == "True" {
        delete_condition(status, "Stalled");
    }
    set_condition(
        status,
        "Ready",
        value,
        first["reason"].as_str().unwrap_or_default(),
        first["message"].as_str().unwrap_or_default(),
        generation,
        now,
    );
}

/// `conditions.MarkReconciling`: Reconciling=True, and no Stalled.
fn mark_reconciling(status: &mut Value, reason: &str, message: &str, generation: i64, now: &str) {
    delete_condition(status, "Stalled");
    set_condition(
        status,
        "Reconciling",
        "True",
        reason,
        message,
        generation,
        now,
    );
}

fn find_mut<'a>(status: &'a mut Value, type_: &str) -> Option<&'a mut Value> {
    status["conditions"]
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["type"] == type_)
}

fn condition_is(status: &Value, type_: &str, value: &str) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == value)
    })
}

fn delete_condition(status: &mut Value, type_: &str) {
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.retain(|c| c["type"] != type_);
    }
}

/// `replaceCondition`: the target takes the replacement's type, keeping its
/// transition time (`conditions.Set` still stamps the generation).
fn rename_condition(status: &mut Value, from: &str, to: &str, reason: &str, generation: i64) {
    if let Some(c) = find_mut(status, from) {
        c["type"] = json!(to);
        c["reason"] = json!(reason);
        c["status"] = json!("True");
        c["observedGeneration"] = json!(generation);
    }
    sort_conditions(status);
}

/// `conditions.Set`: replace or add; the transition time stays while
/// status, reason and message stay; the object's generation is always
/// stamped; the list is kept in `lexicographicLess` order.
fn set_condition(
    status: &mut Value,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &str,
) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let since = conditions
        .iter()
        .find(|c| {
            c["type"] == type_
                && c["status"] == value
                && c["reason"] == reason
                && c["message"] == message
        })
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_string();
    conditions.retain(|c| c["type"] != type_);
    conditions.push(json!({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": since, "observedGeneration": generation,
    }));
    sort_conditions(status);
}

/// `lexicographicLess`: Stalled, Reconciling, Ready first; then the newest
/// observed generation first, then by type.
fn sort_conditions(status: &mut Value) {
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.sort_by_key(|c| {
            let t = c["type"].as_str().unwrap_or_default().to_string();
            let weight = ["Stalled", "Reconciling", "Ready"]
                .iter()
                .position(|w| *w == t)
                .unwrap_or(3);
            let og = if weight < 3 {
                0
            } else {
                -c["observedGeneration"].as_i64().unwrap_or(0)
            };
            (weight, og, t)
        });
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

fn release_namespace(hr: &Value) -> &str {
    hr["spec"]["targetNamespace"]
        .as_str()
        .or_else(|| hr["metadata"]["namespace"].as_str())
        .unwrap_or_default()
}

fn storage_namespace(hr: &Value) -> Option<&str> {
    hr["status"]["storageNamespace"]
        .as_str()
        .or_else(|| hr["spec"]["storageNamespace"].as_str())
        .or_else(|| hr["metadata"]["namespace"].as_str())
}

type Key = (String, String);

fn key(hr: &Value) -> Key {
    let meta = &hr["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// What the watch delivers for one object: generation and request annotation.
fn watched(hr: &Value) -> (i64, Option<String>) {
    (
        hr["metadata"]["generation"].as_i64().unwrap_or(0),
        hr["metadata"]["annotations"][REQUESTED_AT]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_string),
    )
}

/// Why a HelmRelease was reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The informer's first sight of the object (a create event).
    FirstSight,
    /// `GenerationChangedPredicate`: `metadata.generation` changed.
    Generation,
    /// `ReconcileRequestedPredicate`: a new `reconcile.fluxcd.io/requestedAt`
    /// value (compared with the last value the watch saw, not with
    /// `status.lastHandledReconcileAt`).
    RequestedAt,
    /// The controller's own requeue: the dependency interval after
    /// `DependencyNotReady`, or the retry after an error.
    Requeue,
    /// `spec.interval` elapsed ([`HelmControllerModel::reconcile_all`]).
    Interval,
}

/// One reconcile the model ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub namespace: String,
    pub name: String,
    pub trigger: Trigger,
    pub outcome: Outcome,
    /// Whether the status (or Helm storage) changed.
    pub wrote: bool,
}

/// The watch's memory (last generation and requestedAt seen per object) and
/// the requeues the controller scheduled short of the interval.
#[derive(Debug, Default)]
pub struct HelmControllerModel {
    seen: BTreeMap<Key, (i64, Option<String>)>,
    /// Requeued objects and the triggered passes left until they are due.
    requeue: BTreeMap<Key, u32>,
    /// Passes between a requeue and its reconcile (0: the next pass), the
    /// model's stand-in for `--requeue-dependency`.
    requeue_passes: u32,
}

impl HelmControllerModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A model whose requeues wait `passes` triggered passes before they
    /// are due (the binary's loop uses this to space them out in time).
    pub fn with_requeue_passes(passes: u32) -> Self {
        Self {
            requeue_passes: passes,
            ..Self::default()
        }
    }

    /// The state a controller leaves behind after the run that got stuck:
    /// every object already seen by the watch, and no requeue pending except
    /// the dependency wait of a HelmRelease that reads `DependencyNotReady`
    /// (its `RequeueAfter` is still ticking). Per the source, a restarted
    /// controller's first list would reconcile everything; this is the
    /// controller that did not restart.
    pub fn mark_handled(&mut self, server: &FakeApiServer) {
        self.requeue.clear();
        for hr in server.helmreleases() {
            let k = key(&hr);
            self.seen.insert(k.clone(), watched(&hr));
            let waiting = hr["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["reason"] == "DependencyNotReady")
            });
            if waiting {
                self.requeue.insert(k, self.requeue_passes);
            }
        }
    }

    /// Reconciles what the watch delivers since the last pass (first sight,
    /// a generation change, a new requestedAt) and the requeues now due; a
    /// status-only write triggers nothing.
    pub fn reconcile_triggered(&mut self, server: &FakeApiServer) -> Vec<Reconciled> {
        self.pass(server, false)
    }

    /// Reconciles every HelmRelease, as when each one's interval elapsed.
    pub fn reconcile_all(&mut self, server: &FakeApiServer) -> Vec<Reconciled> {
        self.pass(server, true)
    }

    /// Triggered passes until one writes nothing (at most `max_passes`).
    pub fn reconcile_until_quiet(
        &mut self,
        server: &FakeApiServer,
        max_passes: usize,
    ) -> Vec<Reconciled> {
        let mut all = Vec::new();
        for _ in 0..max_passes {
            let pass = self.reconcile_triggered(server);
            let quiet = pass.iter().all(|r| !r.wrote);
            all.extend(pass);
            if quiet {
                break;
            }
        }
        all
    }

    fn pass(&mut self, server: &FakeApiServer, interval: bool) -> Vec<Reconciled> {
        let mut done = Vec::new();
        let mut keys: Vec<Key> = server.helmreleases().iter().map(key).collect();
        keys.sort();
        for k in keys {
            // Re-read: an earlier reconcile in this pass may have changed a dependency.
            let Some(hr) = server.helmrelease(&k.0, &k.1) else {
                continue;
            };
            let now_seen = watched(&hr);
            let trigger = match self.seen.insert(k.clone(), now_seen.clone()) {
                None => Some(Trigger::FirstSight),
                Some((generation, _)) if generation != now_seen.0 => Some(Trigger::Generation),
                Some((_, old)) if now_seen.1.is_some() && now_seen.1 != old => {
                    Some(Trigger::RequestedAt)
                }
                _ if self.requeue_due(&k, interval) => Some(Trigger::Requeue),
                _ if interval => Some(Trigger::Interval),
                _ => None,
            };
            let Some(trigger) = trigger else {
                continue;
            };
            self.requeue.remove(&k);
            let facts = Facts {
                latest: latest_release(server, &hr),
                dependency_not_ready: dependency_not_ready(server, &hr),
                now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            let decision = reconcile(&hr, &facts);
            if matches!(
                decision.outcome,
                Outcome::DependencyNotReady | Outcome::StateError
            ) {
                self.requeue.insert(k.clone(), self.requeue_passes);
            }
            let wrote = self.write(server, &hr, &decision);
            done.push(Reconciled {
                namespace: k.0,
                name: k.1,
                trigger,
                outcome: decision.outcome,
                wrote,
            });
        }
        done
    }

    /// Whether `k`'s requeue is due; a triggered pass counts one down.
    fn requeue_due(&mut self, k: &Key, interval: bool) -> bool {
        match self.requeue.get_mut(k) {
            Some(0) => true,
            Some(left) => {
                if !interval {
                    *left -= 1;
                }
                false
            }
            None => false,
        }
    }

    fn write(&self, server: &FakeApiServer, hr: &Value, decision: &Decision) -> bool {
        let (ns, name) = key(hr);
        let mut wrote = false;
        if let Some(version) = decision.unlocked {
            if let Err(e) = mark_failed(server, hr, version) {
                tracing::warn!("helm-controller model: unlocking {ns}/{name}: {e:#}");
            }
            wrote = true;
        }
        if let Some(version) = decision.upgraded_to {
            if let Err(e) = write_revision(server, hr, version) {
                tracing::warn!("helm-controller model: Helm storage of {ns}/{name}: {e:#}");
            }
            wrote = true;
        }
        if let Some(status) = &decision.status
            && hr.get("status") != Some(status)
        {
            let mut next = hr.clone();
            next["status"] = status.clone();
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            // Like the controller's status patch: generation stays as given.
            match server.apply(next) {
                Ok(_) => wrote = true,
                Err(e) => tracing::warn!("helm-controller model: writing {ns}/{name}: {e:#}"),
            }
        }
        wrote
    }
}

/// Helm's upgrade in storage: the new revision `deployed`, the previous
/// deployed one `superseded`.
fn write_revision(server: &FakeApiServer, hr: &Value, version: u64) -> anyhow::Result<()> {
    let ns = storage_namespace(hr).unwrap_or("default").to_string();
    let name = release_name(hr);
    for mut old in release_secrets(server, hr) {
        if old["metadata"]["labels"]["status"] == "deployed" {
            old["metadata"]["labels"]["status"] = json!("superseded");
            if let Some(m) = old["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            server.apply(old)?;
        }
    }
    server.apply(release_secret(&ns, &name, version, "deployed"))?;
    Ok(())
}

/// The Unlock action in storage: the stale `pending-*` revision becomes `failed`.
fn mark_failed(server: &FakeApiServer, hr: &Value, version: u64) -> anyhow::Result<()> {
    for mut secret in release_secrets(server, hr) {
        if secret["metadata"]["labels"]["version"] == version.to_string().as_str() {
            secret["metadata"]["labels"]["status"] = json!("failed");
            if let Some(m) = secret["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            server.apply(secret)?;
        }
    }
    Ok(())
}

fn release_secret(ns: &str, name: &str, version: u64, status: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"namespace": ns, "name": format!("sh.helm.release.v1.{name}.v{version}"),
            "labels": {"owner": "helm", "name": name, "version": version.to_string(), "status": status}},
        "data": {"release": "c3R1Yg=="},
    })
}

fn release_secrets(server: &FakeApiServer, hr: &Value) -> Vec<Value> {
    let name = release_name(hr);
    server
        .list("v1", "secrets", storage_namespace(hr))
        .into_iter()
        .filter(|s| {
            let l = &s["metadata"]["labels"];
            l["owner"] == "helm" && l["name"] == name.as_str()
        })
        .collect()
}

fn latest_release(server: &FakeApiServer, hr: &Value) -> Option<LatestRelease> {
    release_secrets(server, hr)
        .iter()
        .filter_map(|s| {
            let l = &s["metadata"]["labels"];
            Some(LatestRelease {
                version: l["version"].as_str()?.parse().ok()?,
                status: l["status"].as_str().unwrap_or_default().to_string(),
            })
        })
        .max_by_key(|r| r.version)
}

/// `checkDependencies`: the error for the first `dependsOn` entry (namespace
/// defaulting to the dependent's) that is missing, or not Ready=True at its
/// current generation (`readyExpr` is not modelled).
fn dependency_not_ready(server: &FakeApiServer, hr: &Value) -> Option<String> {
    let own_ns = hr["metadata"]["namespace"].as_str().unwrap_or_default();
    hr["spec"]["dependsOn"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| {
            let ns = d["namespace"].as_str().unwrap_or(own_ns);
            let name = d["name"].as_str().unwrap_or_default();
            match server.helmrelease(ns, name) {
                None => Some(format!("unable to get '{ns}/{name}' dependency: not found")),
                Some(dep) if !is_ready_now(&dep) => {
                    Some(format!("dependency '{ns}/{name}' is not ready"))
                }
                Some(_) => None,
            }
        })
}

/// Ready=True, observed at the current generation (what `checkDependencies`
/// asks of a dependency).
pub fn is_ready_now(hr: &Value) -> bool {
    condition_is(&hr["status"], "Ready", "True")
        && hr["status"]["observedGeneration"] == hr["metadata"]["generation"]
}

impl FakeApiServer {
    /// Stuck mode "Ready write lost" by its mechanism: the install ran, Helm
    /// stored the release `deployed`, the controller's progress patch
    /// recorded the history snapshot and Released=True (Reconciling and Ready
    /// still saying the install is running), and the final patch — the
    /// summarised Ready and observedGeneration — was lost.
    pub fn install_losing_ready_write(&self, hr: Value, since: &str) -> anyhow::Result<Value> {
        self.install_with(hr, since, true)
    }

    /// Stuck mode "Ready write lost, `Released` missing" (helm-controller
    /// #1409) by its mechanism, as the real controller leaves it
    /// (docs/helm-controller-source.md, tests/real/recovery.rs state 1):
    /// every conditions PATCH of the install that carried `Released` failed
    /// while the rest of the status landed (history snapshot `deployed`,
    /// `lastAttemptedReleaseAction`), and the retry reconcile found the
    /// release in sync: Reconciling removed, observedGeneration stamped, Ready
    /// still the install's `Unknown` "Running 'install' action…" from `since`.
    /// No reconcile leaves it: the summary has no `Released` to copy.
    pub fn install_losing_conditions_write(&self, hr: Value, since: &str) -> anyhow::Result<Value> {
        let stuck = self.install_with(hr, since, true)?;
        let generation = stuck["metadata"]["generation"].as_i64().unwrap_or(1);
        let mut status = stuck["status"].clone();
        delete_condition(&mut status, RELEASED);
        delete_condition(&mut status, "Reconciling");
        status["observedGeneration"] = json!(generation);
        let mut next = stuck;
        next["status"] = status;
        if let Some(m) = next["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        self.apply(next)
    }

    /// Stuck mode "lease lost mid-install": Helm finished (its Secret says
    /// `deployed`), but the controller lost its lease before recording the
    /// observation: history empty, no Released, Ready Unknown.
    pub fn install_losing_lease(&self, hr: Value, since: &str) -> anyhow::Result<Value> {
        self.install_with(hr, since, false)
    }

    fn install_with(&self, hr: Value, since: &str, recorded: bool) -> anyhow::Result<Value> {
        let hr = self.apply(hr)?;
        let ns = storage_namespace(&hr).unwrap_or("default").to_string();
        self.apply(release_secret(&ns, &release_name(&hr), 1, "deployed"))?;
        let generation = hr["metadata"]["generation"].as_i64().unwrap_or(1);
        // The CRD's default before the controller's first clean patch.
        let mut status = json!({"storageNamespace": ns, "lastAttemptedGeneration": generation,
                                "observedGeneration": -1, "conditions": []});
        let running = format!("Running 'install' action with timeout of {TIMEOUT}");
        mark_reconciling(&mut status, "Progressing", &running, generation, since);
        set_condition(
            &mut status,
            "Ready",
            "Unknown",
            "Progressing",
            &running,
            generation,
            since,
        );
        if recorded {
            status["history"] = json!([snapshot(&hr, 1, "install", since)]);
            status["lastAttemptedReleaseAction"] = json!("install");
            set_condition(
                &mut status,
                RELEASED,
                "True",
                "InstallSucceeded",
                &success_message(&hr, "install", 1),
                generation,
                since,
            );
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

    fn cond(type_: &str, status: &str, reason: &str, og: i64) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": reason,
               "observedGeneration": og, "lastTransitionTime": "2025-01-01T00:00:00Z"})
    }

    fn hr(conditions: Value, history: Value, test_enable: bool) -> Value {
        json!({"metadata": {"namespace": "a", "name": "x", "generation": 2},
               "spec": {"test": {"enable": test_enable}, "chart": {"spec": {"chart": "x", "version": "1.0.0"}}},
               "status": {"observedGeneration": 1, "history": history, "conditions": conditions}})
    }

    fn facts(latest: Option<(u64, &str)>, dep: Option<&str>) -> Facts {
        Facts {
            latest: latest.map(|(version, status)| LatestRelease {
                version,
                status: status.into(),
            }),
            dependency_not_ready: dep.map(str::to_string),
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
        let deployed = Some((1, "deployed"));
        let released = json!([cond("Released", "True", "InstallSucceeded", 1)]);
        let stuck = json!([
            cond("Ready", "Unknown", "Progressing", 2),
            cond("Reconciling", "True", "Progressing", 2),
            cond("Released", "True", "InstallSucceeded", 2)
        ]);
        let v1 = json!([{"version": 1, "status": "deployed"}]);
        let tested = json!([{"version": 1, "status": "deployed", "testHooks": {}}]);
        let pending = json!([{"version": 1, "status": "pending-install"}]);
        let test_failed = json!([
            cond("Ready", "True", "Forged", 2),
            cond("Released", "True", "InstallSucceeded", 1),
            cond("TestSuccess", "False", "TestFailed", 1)
        ]);
        let newer_released = json!([
            cond("Released", "True", "UpgradeSucceeded", 2),
            cond("TestSuccess", "False", "TestFailed", 1)
        ]);
        let remediated_false = json!([
            cond("Released", "False", "UpgradeFailed", 2),
            cond("Remediated", "False", "RollbackFailed", 2)
        ]);
        let remediated_true = json!([
            cond("Released", "False", "UpgradeFailed", 1),
            cond("Remediated", "True", "RollbackSucceeded", 1)
        ]);
        let rows: Vec<Row> = vec![
            (
                "in sync, Released True",
                hr(released.clone(), v1.clone(), false),
                facts(deployed, None),
                Outcome::InSync,
                Some(("True", "InstallSucceeded")),
            ),
            // The in-sync branch always summarises: the lost Ready write is
            // restored by any reconcile that runs (the stuck mode lives on
            // the missing trigger, not here).
            (
                "in sync, Ready Unknown and Reconciling True",
                hr(stuck, v1.clone(), false),
                facts(deployed, None),
                Outcome::InSync,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "no summary condition: Ready keeps the prelude's Unknown",
                hr(
                    json!([cond("Ready", "True", "Forged", 1)]),
                    v1.clone(),
                    false,
                ),
                facts(deployed, None),
                Outcome::InSync,
                Some(("Unknown", "Progressing")),
            ),
            (
                "tests on, TestSuccess False at the same generation",
                hr(test_failed.clone(), tested.clone(), true),
                facts(deployed, None),
                Outcome::InSync,
                Some(("False", "TestFailed")),
            ),
            (
                "tests on, a newer Released wins over an older TestSuccess",
                hr(newer_released, tested.clone(), true),
                facts(deployed, None),
                Outcome::InSync,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "tests off: TestSuccess dropped",
                hr(test_failed, v1.clone(), false),
                facts(deployed, None),
                Outcome::InSync,
                Some(("True", "InstallSucceeded")),
            ),
            (
                "tests on, never tested: the test action is not modelled",
                hr(released.clone(), v1.clone(), true),
                facts(deployed, None),
                Outcome::NotModelled("test"),
                None,
            ),
            (
                "Remediated first means False",
                hr(remediated_false, v1.clone(), false),
                facts(deployed, None),
                Outcome::InSync,
                Some(("False", "RollbackFailed")),
            ),
            (
                "in sync, a true Remediated becomes Released",
                hr(remediated_true, v1.clone(), false),
                facts(deployed, None),
                Outcome::InSync,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "empty history: unmanaged, upgraded",
                hr(json!([]), json!([]), false),
                facts(deployed, None),
                Outcome::Upgraded,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "pending-install history: not observed, upgraded",
                hr(json!([]), pending.clone(), false),
                facts(deployed, None),
                Outcome::Upgraded,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "a newer deployed release: not observed, upgraded",
                hr(released.clone(), v1.clone(), false),
                facts(Some((2, "deployed")), None),
                Outcome::Upgraded,
                Some(("True", "UpgradeSucceeded")),
            ),
            // A stale pending release is unlocked (set failed); with no
            // snapshot of it in the history the same reconcile upgrades.
            (
                "pending release not in the history: unlocked, then upgraded",
                hr(released.clone(), v1.clone(), false),
                facts(Some((2, "pending-upgrade")), None),
                Outcome::Unlocked,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "killed install (history empty): unlocked, then upgraded",
                hr(json!([]), json!([]), false),
                facts(Some((1, "pending-install")), None),
                Outcome::Unlocked,
                Some(("True", "UpgradeSucceeded")),
            ),
            (
                "pending release in the history: unlocked, now failed",
                hr(released.clone(), pending.clone(), false),
                facts(Some((1, "pending-install")), None),
                Outcome::Unlocked,
                Some(("False", "PendingRelease")),
            ),
            (
                "no release: absent",
                hr(json!([]), json!([]), false),
                facts(None, None),
                Outcome::Absent,
                None,
            ),
            (
                "failed release: remediation not modelled",
                hr(
                    released.clone(),
                    json!([{"version": 1, "status": "failed"}]),
                    false,
                ),
                facts(Some((1, "failed")), None),
                Outcome::NotModelled("remediation"),
                None,
            ),
            (
                "superseded latest: state error",
                hr(
                    released.clone(),
                    json!([{"version": 1, "status": "superseded"}]),
                    false,
                ),
                facts(Some((1, "superseded")), None),
                Outcome::StateError,
                Some(("False", "StateError")),
            ),
            (
                "dependency not ready",
                hr(released.clone(), v1.clone(), false),
                facts(deployed, Some("dependency 'a/dep' is not ready")),
                Outcome::DependencyNotReady,
                Some(("False", "DependencyNotReady")),
            ),
        ];
        for (what, object, facts, outcome, want) in rows {
            let got = reconcile(&object, &facts);
            assert_eq!(got.outcome, outcome, "{what}");
            let upgraded = got.upgraded_to.is_some();
            assert_eq!(
                got.status.as_ref().map(ready),
                want.map(|(s, r)| (s.to_string(), r.to_string())),
                "{what}"
            );
            let Some(status) = got.status else { continue };
            let clean = matches!(outcome, Outcome::InSync | Outcome::Upgraded)
                || (outcome == Outcome::Unlocked && upgraded);
            // observedGeneration only on a clean result; Ready always at the
            // current generation; Reconciling gone only when done.
            let og = if clean { 2 } else { 1 };
            assert_eq!(status["observedGeneration"], og, "{what}");
            let conditions = status["conditions"].as_array().unwrap();
            let at = conditions
                .iter()
                .position(|c| c["type"] == "Ready")
                .unwrap();
            assert!(
                conditions[..at].iter().all(|c| c["type"] == "Reconciling"),
                "{what}: only Reconciling before Ready"
            );
            assert_eq!(conditions[at]["observedGeneration"], 2, "{what}");
            let reconciling = conditions.iter().any(|c| c["type"] == "Reconciling");
            assert_eq!(reconciling, !clean, "{what}: Reconciling");
        }
    }

    #[test]
    fn an_upgrade_records_a_new_revision_and_a_suspended_object_only_its_generation() {
        let got = reconcile(
            &hr(json!([]), json!([]), false),
            &facts(Some((3, "deployed")), None),
        );
        assert_eq!(got.upgraded_to, Some(4));
        let status = got.status.unwrap();
        assert_eq!(status["history"].as_array().unwrap().len(), 1);
        assert_eq!(status["history"][0]["version"], 4);
        assert_eq!(status["history"][0]["action"], "upgrade");

        let mut suspended = hr(
            json!([cond("Ready", "Unknown", "Progressing", 1)]),
            json!([]),
            false,
        );
        suspended["spec"]["suspend"] = json!(true);
        suspended["metadata"]["annotations"] = json!({REQUESTED_AT: "r1"});
        let got = reconcile(&suspended, &facts(Some((1, "deployed")), None));
        assert_eq!(got.outcome, Outcome::Suspended);
        let mut want = suspended["status"].clone();
        want["observedGeneration"] = json!(2);
        want["lastHandledReconcileAt"] = json!("r1");
        assert_eq!(got.status, Some(want));
    }
}
