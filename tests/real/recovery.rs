//! Issue 20: every stuck state created by the mechanism that creates it in
//! production, with the real helm-controller doing the work, at every
//! helm-controller version of the testbed — what the controller does alone,
//! what we decide, whether our fix holds, whether a dependent unblocks.
//!
//! helm-controller talks to the API server through a fault proxy
//! (crates/fault-proxy); the rules that create each state follow
//! docs/helm-controller-source.md (a). Two HelmReleases are put in the same
//! state together: `stuck-alone` is left to the controller (≥ 3 intervals and
//! one controller restart), `stuck-fixed` gets our run (`--dry-run`,
//! `explain`, then acting, as the ServiceAccount with `rbac/` applied); a third,
//! `dependent`, `dependsOn` `stuck-fixed`.
//!
//! Each test writes its measurement as one record
//! (`recovery_matrix::Record`) into `target/recovery-matrix/` (or
//! `$RECOVERY_MATRIX_DIR`) *before* asserting, so docs/recovery-matrix.md
//! (`scripts/recovery-matrix`) shows what was seen even when an assertion
//! fails; then it asserts the cell, so a change of behaviour fails the test.
//!
//! The tests take minutes each and start a whole testbed; they run one at a
//! time (an exclusive file lock), whatever the test runner's parallelism.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use fault_proxy::{Action, CaPem, FaultProxy, ProxyConfig, Reply, RequestInfo, Rule};
use recovery_matrix::{Alone, Condition, Decision, History0, Record, Signature, Storage};
use serde_json::{Value, json};
use testbed::{Options, ServiceAccountAccess, Testbed};

use crate::support::{self, HR_API, REQUESTED_AT, describe, find_condition, report};

const NS: &str = "apps";
const ALONE: &str = "stuck-alone";
const FIXED: &str = "stuck-fixed";
const DEPENDENT: &str = "dependent";
const STUCK: [&str; 2] = [ALONE, FIXED];
/// `spec.interval` of every HelmRelease here.
const INTERVAL: Duration = Duration::from_secs(20);
/// Our `--stuck-threshold`: below the time each state has been watched alone
/// before our run looks at it.
const THRESHOLD: &str = "60s";
const THRESHOLD_SECS: u64 = 60;
/// A deadline for one thing the controllers do.
const STEP: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

/// Everything one cell needs: the testbed with the chosen helm-controller
/// reaching the API server through the proxy, `rbac/` applied, the chart
/// repository as a HelmRepository.
struct Env {
    version: String,
    bed: Testbed,
    proxy: FaultProxy,
    sa: ServiceAccountAccess,
    _lock: std::fs::File,
}

/// One cell at a time across test processes.
fn exclusive() -> std::fs::File {
    let path = std::env::temp_dir().join("stuck-hr-recovery-recovery-matrix.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

async fn env(version: &str) -> Env {
    let lock = exclusive();
    let bed = support::start(Options::default().helm_controller(version)).await;
    let ca = CaPem {
        cert_pem: bed.pki().ca_pem.clone(),
        key_pem: std::fs::read_to_string(&bed.pki().ca_key).expect("testbed CA key"),
    };
    let proxy = FaultProxy::start(ProxyConfig::new(
        bed.apiserver_url(),
        bed.pki().ca_pem.clone(),
        ca,
    ))
    .expect("fault proxy starts");
    // From here on helm-controller reaches the API server only through the proxy.
    bed.start_helm_controller(Some(&proxy.url()))
        .await
        .unwrap_or_else(|e| panic!("helm-controller through the proxy: {e:#}"));
    let sa = support::apply_rbac(&bed).await;
    bed.ensure_namespace(NS).await.expect("namespace");
    let url = bed.chart_repo_url().expect("chart repository").to_owned();
    bed.create(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"namespace": NS, "name": "charts"},
        "spec": {"url": url, "interval": "10m"},
    }))
    .await
    .expect("HelmRepository created");
    Env {
        version: version.to_owned(),
        bed,
        proxy,
        sa,
        _lock: lock,
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// A HelmRelease of ours; `role` labels it so a run can be scoped to it.
fn helm_release(name: &str, chart: &str, depends_on: Option<&str>) -> Value {
    let mut spec = json!({
        "interval": secs(INTERVAL),
        "timeout": "10m",
        "chart": {"spec": {"chart": chart, "version": "0.1.0",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
        "values": {"message": "first"},
    });
    if let Some(dep) = depends_on {
        spec["dependsOn"] = json!([{"name": dep}]);
    }
    json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"namespace": NS, "name": name, "labels": {"recovery-matrix/role": name}},
        "spec": spec,
    })
}

async fn create_all(e: &Env, chart: &str) {
    for name in STUCK {
        e.bed
            .create(helm_release(name, chart, None))
            .await
            .expect("HelmRelease created");
    }
    e.bed
        .create(helm_release(DEPENDENT, "hello", Some(FIXED)))
        .await
        .expect("dependent created");
}

async fn hr(e: &Env, name: &str) -> Value {
    support::get_hr(&e.bed, NS, name).await
}

fn ready_status(hr: &Value) -> String {
    find_condition(hr, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

fn is_ready(hr: &Value) -> bool {
    ready_status(hr) == "True"
}

/// The latest Helm release Secret of `release` (highest numeric `version`).
async fn storage(e: &Env, release: &str) -> Option<Storage> {
    let api = e
        .bed
        .api("v1", "Secret", Some(NS))
        .await
        .expect("secrets api");
    let list = api
        .list_metadata(
            &kube::api::ListParams::default().labels(&format!("owner=helm,name={release}")),
        )
        .await
        .expect("list release Secrets");
    list.items
        .iter()
        .filter_map(|s| {
            let labels = s.metadata.labels.as_ref()?;
            Some(Storage {
                version: labels.get("version")?.parse().ok()?,
                status: labels.get("status")?.clone(),
            })
        })
        .max_by_key(|s| s.version)
}

async fn signature(e: &Env, name: &str) -> Signature {
    let object = hr(e, name).await;
    signature_of(&object, storage(e, name).await)
}

fn signature_of(object: &Value, storage: Option<Storage>) -> Signature {
    let conditions = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Condition {
            type_: c["type"].as_str().unwrap_or_default().to_owned(),
            status: c["status"].as_str().unwrap_or_default().to_owned(),
            reason: c["reason"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let h = &object["status"]["history"][0];
    let history0 = h.is_object().then(|| History0 {
        status: h["status"].as_str().unwrap_or_default().to_owned(),
        action: h["action"].as_str().map(str::to_owned),
        version: h["version"].as_i64().unwrap_or_default(),
    });
    Signature {
        conditions,
        history0,
        storage,
    }
}

/// The object without what only adds noise to the record.
fn trimmed(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    object
}

/// Polls `name` until `pred` holds; panics with the last object after `timeout`.
async fn wait_hr(
    e: &Env,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) {
    let t = Instant::now();
    loop {
        let object = hr(e, name).await;
        if pred(&object) {
            return;
        }
        if t.elapsed() > timeout {
            panic!(
                "{NS}/{name}: {what} not reached in {timeout:?}; last: {:#}\n{}",
                object["status"],
                e.bed.log_tails(60)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Watches `name` for `span`; `Some(seconds from start)` when it became Ready.
async fn watch_until_ready(e: &Env, name: &str, span: Duration) -> Option<f64> {
    let t = Instant::now();
    while t.elapsed() < span {
        if is_ready(&hr(e, name).await) {
            return Some(t.elapsed().as_secs_f64());
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// A `/status` PATCH of one of the stuck HelmReleases whose conditions list
/// holds a `Released` condition (with `reason`, when given).
fn conditions_patch_with_released(reason: Option<&'static str>) -> impl Fn(&RequestInfo) -> bool {
    move |r: &RequestInfo| {
        if !r.name.as_deref().is_some_and(|n| STUCK.contains(&n)) {
            return false;
        }
        let Some(body) = r.body_json() else {
            return false;
        };
        body["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Released" && reason.is_none_or(|want| c["reason"] == want))
    }
}

fn status_patch_rule(action: Action) -> Rule {
    Rule::new(action)
        .method("PATCH")
        .resource("helmreleases")
        .subresource("status")
}

/// What our binary decided about `stuck-fixed`: (plan reason, branch), from a
/// `--dry-run -o json` run scoped to it; and `explain`'s reason.
async fn decide(e: &Env) -> (String, String, String) {
    let selector = format!("recovery-matrix/role={FIXED}");
    let out = support::run(
        &e.bed,
        &e.sa,
        &[
            "--dry-run",
            "-o",
            "json",
            "--stuck-threshold",
            THRESHOLD,
            "-n",
            NS,
            "-l",
            &selector,
        ],
    )
    .await;
    let plan = report(&out);
    let (reason, branch) = plan_reason(&plan);
    let out = support::run(
        &e.bed,
        &e.sa,
        &[
            "explain",
            &format!("{NS}/{FIXED}"),
            "-o",
            "json",
            "--stuck-threshold",
            THRESHOLD,
        ],
    )
    .await;
    assert!(out.status.success(), "explain: {}", describe(&out));
    let explained: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("explain -o json ({err}): {}", describe(&out)));
    let explain_reason = explained["reason"].as_str().unwrap_or_default().to_owned();
    (reason, branch, explain_reason)
}

/// (reason, branch) of `stuck-fixed` in a report: its action, its listed skip,
/// or `ready` (counted, not listed).
fn plan_reason(report: &Value) -> (String, String) {
    let is_fixed = |x: &&Value| x["namespace"] == NS && x["name"] == FIXED;
    if let Some(a) = report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(is_fixed)
    {
        return (
            a["reason"].as_str().unwrap_or_default().to_owned(),
            a["branch"].as_str().unwrap_or_default().to_owned(),
        );
    }
    if let Some(s) = report["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .find(is_fixed)
    {
        return (
            s["reason"].as_str().unwrap_or_default().to_owned(),
            "skip".to_owned(),
        );
    }
    ("ready".to_owned(), "skip".to_owned())
}

/// Runs our binary for real on `stuck-fixed`; returns the result of its action
/// (`None` when it did not act).
async fn act(e: &Env) -> Option<String> {
    let selector = format!("recovery-matrix/role={FIXED}");
    let out = support::run(
        &e.bed,
        &e.sa,
        &[
            "-o",
            "json",
            "--stuck-threshold",
            THRESHOLD,
            "-n",
            NS,
            "-l",
            &selector,
        ],
    )
    .await;
    let r = report(&out);
    r["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == FIXED)
        .map(|a| a["result"].as_str().unwrap_or_default().to_owned())
}

/// Every write our ServiceAccount made went to `stuck-fixed`, its status, or
/// Events (the audit log of the real API server).
fn nothing_else(e: &Env) -> (bool, Vec<String>) {
    let writes: Vec<String> = support::audit_of(&e.bed, support::SA_USER)
        .into_iter()
        .filter(|ev| {
            matches!(
                ev["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete" | "deletecollection")
            )
        })
        .filter(|ev| ev["stage"] == "ResponseComplete")
        .filter(|ev| {
            let o = &ev["objectRef"];
            let ours =
                o["resource"] == "helmreleases" && o["namespace"] == NS && o["name"] == FIXED;
            let event = o["resource"] == "events";
            let lease = o["resource"] == "leases";
            !(ours || event || lease)
        })
        .map(|ev| format!("{} {}", ev["verb"], ev["requestURI"]))
        .collect();
    (writes.is_empty(), writes)
}

/// After our fix: still Ready across an interval reconcile (a controller status
/// PATCH of `stuck-fixed` after `since`, seen in the proxy's log) and a
/// `requestedAt` reconcile (`status.lastHandledReconcileAt` picks it up).
async fn stays_ready(e: &Env, since: u64, notes: &mut Vec<String>) -> bool {
    let t = Instant::now();
    let deadline = INTERVAL * 3 + Duration::from_secs(10);
    loop {
        let seen = e
            .proxy
            .requests()
            .iter()
            .filter(|x| {
                x.id > since
                    && x.method == "PATCH"
                    && x.name.as_deref() == Some(FIXED)
                    && x.subresource.as_deref() == Some("status")
            })
            .count();
        if seen >= 2 {
            break;
        }
        if t.elapsed() > deadline {
            notes.push(format!(
                "no interval reconcile of {FIXED} within {deadline:?} after our run"
            ));
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_interval = hr(e, FIXED).await;
    if !is_ready(&after_interval) {
        notes.push(format!(
            "after an interval reconcile: Ready={}",
            ready_status(&after_interval)
        ));
        return false;
    }
    let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    e.bed
        .merge_patch(
            HR_API,
            "HelmRelease",
            Some(NS),
            FIXED,
            json!({"metadata": {"annotations": {REQUESTED_AT: stamp}}}),
            false,
        )
        .await
        .expect("requestedAt annotation");
    wait_hr(e, FIXED, "lastHandledReconcileAt", STEP, |o| {
        o["status"]["lastHandledReconcileAt"] == stamp.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_request = hr(e, FIXED).await;
    if !is_ready(&after_request) {
        notes.push(format!(
            "after a requestedAt reconcile: Ready={}",
            ready_status(&after_request)
        ));
        return false;
    }
    true
}

async fn dependent_ready(e: &Env) -> bool {
    watch_until_ready(e, DEPENDENT, Duration::from_secs(60))
        .await
        .is_some()
}

fn write(record: &Record) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = recovery_matrix::results_dir(&root);
    let path = recovery_matrix::write_record(&dir, record).expect("record written");
    eprintln!("recovery matrix record: {}", path.display());
    path
}

/// Waits the rest of the threshold since `since`, so our run sees the state as
/// stuck (its age is counted from Ready's last transition, which is older).
async fn past_threshold(since: Instant) {
    let need = Duration::from_secs(THRESHOLD_SECS + 3);
    if since.elapsed() < need {
        tokio::time::sleep(need - since.elapsed()).await;
    }
}

/// State 1: Ready write lost, `Released` missing (#1409's shape). Every
/// conditions PATCH carrying `Released` is answered 409 (the patch helper's
/// five tries each), the rest of the status passes.
async fn state_1(version: &str) -> Record {
    let e = env(version).await;
    let rule = e.proxy.add_rule(
        status_patch_rule(Action::Respond(Reply::conflict()))
            .when(conditions_patch_with_released(None)),
    );
    create_all(&e, "hello").await;
    for name in STUCK {
        wait_hr(&e, name, "history[0] deployed", STEP, |o| {
            o["status"]["history"][0]["status"] == "deployed"
        })
        .await;
    }
    let created = Instant::now();
    // The retry reconcile after the failed one; then nothing more carries Released.
    tokio::time::sleep(Duration::from_secs(5)).await;
    e.proxy.remove_rule(rule);
    let fired = e.proxy.fired(rule);
    let stuck = signature(&e, ALONE).await;

    // Alone: three intervals, a restart, one more interval.
    let mut left = watch_until_ready(&e, ALONE, INTERVAL * 3 + Duration::from_secs(5)).await;
    let mut left_by = left.map(|_| "interval".to_owned());
    if left.is_none() {
        let t = Instant::now();
        e.bed
            .start_helm_controller(None)
            .await
            .expect("helm-controller restarted");
        if let Some(s) = watch_until_ready(&e, ALONE, INTERVAL + Duration::from_secs(10)).await {
            left = Some(created.elapsed().as_secs_f64() - t.elapsed().as_secs_f64() + s);
            left_by = Some("restart".to_owned());
        }
    }
    let observed = created.elapsed().as_secs_f64();
    let left_signature = match left {
        Some(_) => Some(signature(&e, ALONE).await),
        None => None,
    };
    // What persisted: the signature at the end of the watch.
    let stuck = if left.is_none() {
        signature(&e, ALONE).await
    } else {
        stuck
    };

    past_threshold(created).await;
    let (reason, branch, explain_reason) = decide(&e).await;
    let before = hr(&e, FIXED).await;
    let mark = e.proxy.requests().last().map(|x| x.id).unwrap_or(0);
    let result = act(&e).await;
    let mut notes = vec![format!(
        "the proxy answered 409 to {fired} conditions PATCHes carrying Released"
    )];
    let recovered = result.is_some().then_some(is_ready(&hr(&e, FIXED).await));
    let stays = match recovered {
        Some(true) => Some(stays_ready(&e, mark, &mut notes).await),
        _ => None,
    };
    let dependents = Some(dependent_ready(&e).await);
    let (nothing_else, others) = nothing_else(&e);
    notes.extend(others.into_iter().map(|w| format!("other write: {w}")));
    let after = hr(&e, FIXED).await;
    Record {
        version: e.version.clone(),
        state: "1".into(),
        state_title: None,
        mechanism: format!(
            "install (chart hello); the fault proxy answers 409 to every /status PATCH whose conditions carry Released ({fired} of them: P3 and the deferred P4, five tries each), forwards the rest of the status"
        ),
        interval_seconds: INTERVAL.as_secs_f64(),
        alone: Alone {
            left_by_itself: left.is_some(),
            after_seconds: left,
            left_by,
            observed_seconds: observed,
            restarts: 1,
            signature: stuck,
            left_signature,
        },
        decision: Decision {
            reason,
            explain_reason,
            branch,
            result,
        },
        recovered,
        stays,
        dependents,
        nothing_else,
        before: trimmed(before),
        after: trimmed(after),
        notes,
    }
}

/// State 2: Ready write lost while `Released=True` is recorded: an upgrade
/// whose conditions PATCHes carrying `Released/UpgradeSucceeded` are answered
/// 409 (the install's `Released=True/InstallSucceeded` stays).
async fn state_2(version: &str) -> Record {
    let e = env(version).await;
    create_all(&e, "hello").await;
    for name in [ALONE, FIXED, DEPENDENT] {
        wait_hr(&e, name, "Ready=True after install", STEP, is_ready).await;
    }
    let rule = e.proxy.add_rule(
        status_patch_rule(Action::Respond(Reply::conflict()))
            .when(conditions_patch_with_released(Some("UpgradeSucceeded"))),
    );
    for name in STUCK {
        e.bed
            .merge_patch(
                HR_API,
                "HelmRelease",
                Some(NS),
                name,
                json!({"spec": {"values": {"message": "second"}}}),
                false,
            )
            .await
            .expect("values changed");
    }
    // The upgrade lands in history; catch the stuck state while it lasts.
    let t = Instant::now();
    let mut stuck: Option<Signature> = None;
    let mut created: Option<Instant> = None;
    let mut left: Option<f64> = None;
    while t.elapsed() < STEP {
        let o = hr(&e, ALONE).await;
        let upgraded = o["status"]["history"][0]["version"] == 2
            && o["status"]["history"][0]["status"] == "deployed";
        if upgraded && created.is_none() {
            created = Some(Instant::now());
        }
        if upgraded && !is_ready(&o) && stuck.is_none() {
            stuck = Some(signature_of(&o, storage(&e, ALONE).await));
        }
        if upgraded && is_ready(&o) && e.proxy.fired(rule) > 0 {
            left = created.map(|c| c.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = created.unwrap_or_else(|| panic!("{NS}/{ALONE} was never upgraded"));
    let fired = e.proxy.fired(rule);
    let mut notes = vec![format!(
        "the proxy answered 409 to {fired} conditions PATCHes carrying Released/UpgradeSucceeded"
    )];
    if stuck.is_none() {
        notes.push(
            "the stuck signature was not caught by polling (it lasted less than 100 ms); shown is the one after"
                .into(),
        );
    }
    // Keep watching three intervals and a restart: it must stay Ready.
    let mut relapsed = false;
    let t = Instant::now();
    while t.elapsed() < INTERVAL * 3 {
        if !is_ready(&hr(&e, ALONE).await) {
            relapsed = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    e.proxy.remove_rule(rule);
    e.bed
        .start_helm_controller(None)
        .await
        .expect("helm-controller restarted");
    tokio::time::sleep(Duration::from_secs(10)).await;
    if !is_ready(&hr(&e, ALONE).await) {
        relapsed = true;
    }
    if relapsed {
        notes.push(format!("{ALONE} was seen not Ready again after it healed"));
    }
    let observed = created.elapsed().as_secs_f64();
    let left_signature = Some(signature(&e, ALONE).await);
    let stuck = stuck.unwrap_or_else(|| left_signature.clone().unwrap_or_default());

    let (reason, branch, explain_reason) = decide(&e).await;
    let before = hr(&e, FIXED).await;
    let mark = e.proxy.requests().last().map(|x| x.id).unwrap_or(0);
    let result = act(&e).await;
    let recovered = result.is_some().then_some(is_ready(&hr(&e, FIXED).await));
    let stays = match recovered {
        Some(true) => Some(stays_ready(&e, mark, &mut notes).await),
        _ => None,
    };
    let dependents = Some(dependent_ready(&e).await);
    let (nothing_else, others) = nothing_else(&e);
    notes.extend(others.into_iter().map(|w| format!("other write: {w}")));
    let after = hr(&e, FIXED).await;
    Record {
        version: e.version.clone(),
        state: "2".into(),
        state_title: None,
        mechanism: format!(
            "install, then an upgrade (values changed); the fault proxy answers 409 to every /status PATCH whose conditions carry Released/UpgradeSucceeded ({fired} of them), forwards the rest"
        ),
        interval_seconds: INTERVAL.as_secs_f64(),
        alone: Alone {
            left_by_itself: left.is_some() && !relapsed,
            after_seconds: left,
            left_by: left.map(|_| "retry".to_owned()),
            observed_seconds: observed,
            restarts: 1,
            signature: stuck,
            left_signature,
        },
        decision: Decision {
            reason,
            explain_reason,
            branch,
            result,
        },
        recovered,
        stays,
        dependents,
        nothing_else,
        before: trimmed(before),
        after: trimmed(after),
        notes,
    }
}

/// States 3 and 4: the controller killed mid-install, restarted later. State
/// 3 (`chart` hello): P3's conditions PATCH is held, the controller SIGKILLed,
/// the held request dropped — Helm's storage says `deployed`, the history is
/// empty. State 4 (`chart` slow-install): SIGKILL while Helm waits on the
/// pre-install hook — storage `pending-install`.
async fn state_killed(version: &str, state: &str) -> Record {
    let e = env(version).await;
    let mut notes = Vec::new();
    let mechanism;
    if state == "3" {
        let rule = e
            .proxy
            .add_rule(status_patch_rule(Action::Hold).when(conditions_patch_with_released(None)));
        create_all(&e, "hello").await;
        let t = Instant::now();
        let held = loop {
            let held: Vec<_> = e
                .proxy
                .held()
                .into_iter()
                .filter(|h| h.rule == rule)
                .collect();
            let names: std::collections::BTreeSet<_> =
                held.iter().filter_map(|h| h.request.name.clone()).collect();
            if names.len() == STUCK.len() {
                break held;
            }
            assert!(
                t.elapsed() < STEP,
                "P3 of both not held: {names:?}\n{}",
                e.bed.log_tails(60)
            );
            tokio::time::sleep(POLL).await;
        };
        e.bed.kill_helm_controller();
        for h in &held {
            e.proxy
                .release(h.id, Action::Drop)
                .expect("held request dropped");
        }
        e.proxy.remove_rule(rule);
        mechanism = format!(
            "install (chart hello); the fault proxy holds the first /status PATCH carrying Released (P3's conditions PATCH; {} held), helm-controller is SIGKILLed, the held requests dropped, the controller restarted later",
            held.len()
        );
    } else {
        create_all(&e, "slow-install").await;
        let t = Instant::now();
        loop {
            let mut pending = 0;
            for name in STUCK {
                if storage(&e, name)
                    .await
                    .is_some_and(|s| s.status == "pending-install")
                {
                    pending += 1;
                }
            }
            if pending == STUCK.len() {
                break;
            }
            assert!(
                t.elapsed() < STEP,
                "no pending-install in storage\n{}",
                e.bed.log_tails(60)
            );
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        e.bed.kill_helm_controller();
        mechanism = "install (chart slow-install: a pre-install hook Job no controller-manager runs); helm-controller SIGKILLed while Helm waits with the release pending-install, restarted later".to_owned();
    }
    let created = Instant::now();
    let stuck = signature(&e, ALONE).await;

    // No controller runs now: our run sees the state once it is past the threshold.
    past_threshold(created).await;
    let (reason, branch, explain_reason) = decide(&e).await;
    let before = hr(&e, FIXED).await;
    let result = act(&e).await;
    if result.is_some() {
        notes.push("our run acted while no helm-controller was running".to_owned());
    }

    // The restart: the start-up reconcile of every HelmRelease.
    let restart = Instant::now();
    e.bed
        .start_helm_controller(None)
        .await
        .expect("helm-controller restarted");
    // Seconds from the restart until it was Ready.
    let left = watch_until_ready(&e, ALONE, INTERVAL * 3 + Duration::from_secs(30))
        .await
        .map(|_| restart.elapsed().as_secs_f64());
    let left_signature = match left {
        Some(_) => Some(signature(&e, ALONE).await),
        None => None,
    };
    let observed = created.elapsed().as_secs_f64();
    let fixed_ready = watch_until_ready(&e, FIXED, STEP).await.is_some();
    // The start-up reconcile's own writes are not the interval reconcile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = e.proxy.requests().last().map(|x| x.id).unwrap_or(0);
    let recovered = result.is_some().then_some(fixed_ready);
    let stays = match recovered {
        Some(true) => Some(stays_ready(&e, mark, &mut notes).await),
        _ => None,
    };
    let dependents = Some(dependent_ready(&e).await);
    let (nothing_else, others) = nothing_else(&e);
    notes.extend(others.into_iter().map(|w| format!("other write: {w}")));
    let after = hr(&e, FIXED).await;
    Record {
        version: e.version.clone(),
        state: state.into(),
        state_title: None,
        mechanism,
        interval_seconds: INTERVAL.as_secs_f64(),
        alone: Alone {
            left_by_itself: left.is_some(),
            after_seconds: left,
            left_by: left.map(|_| "restart".to_owned()),
            observed_seconds: observed,
            restarts: 1,
            signature: stuck,
            left_signature,
        },
        decision: Decision {
            reason,
            explain_reason,
            branch,
            result,
        },
        recovered,
        stays,
        dependents,
        nothing_else,
        before: trimmed(before),
        after: trimmed(after),
        notes,
    }
}

/// State 5a (issue 20 point 5): `Released=False` left by a failed install,
/// then the successful upgrade's Ready write lost. The install of
/// slow-install times out (5 s: its pre-install hook never runs), so
/// `Released=False/InstallFailed` and history[0] `failed`; a values change
/// resets the failure count and the controller upgrades; the fault proxy
/// answers 409 to the conditions PATCHes carrying `Released/UpgradeSucceeded`.
/// The in-sync summary then copies `Released=False` into Ready unless the
/// controller carries PR #1411.
async fn state_5a(version: &str) -> Record {
    let e = env(version).await;
    for name in STUCK {
        let mut object = helm_release(name, "slow-install", None);
        object["spec"]["timeout"] = json!("5s");
        e.bed.create(object).await.expect("HelmRelease created");
    }
    e.bed
        .create(helm_release(DEPENDENT, "hello", Some(FIXED)))
        .await
        .expect("dependent created");
    for name in STUCK {
        wait_hr(&e, name, "Released=False InstallFailed", STEP, |o| {
            find_condition(o, "Released").is_some_and(|c| c["reason"] == "InstallFailed")
                && o["status"]["history"][0]["status"] == "failed"
        })
        .await;
    }
    let rule = e.proxy.add_rule(
        status_patch_rule(Action::Respond(Reply::conflict()))
            .when(conditions_patch_with_released(Some("UpgradeSucceeded"))),
    );
    for name in STUCK {
        e.bed
            .merge_patch(
                HR_API,
                "HelmRelease",
                Some(NS),
                name,
                json!({"spec": {"values": {"message": "second"}}}),
                false,
            )
            .await
            .expect("values changed");
    }
    for name in STUCK {
        wait_hr(&e, name, "history[0] v2 deployed", STEP, |o| {
            o["status"]["history"][0]["version"] == 2
                && o["status"]["history"][0]["status"] == "deployed"
        })
        .await;
    }
    let created = Instant::now();
    let first = signature(&e, ALONE).await;
    let mut left = watch_until_ready(&e, ALONE, INTERVAL * 3 + Duration::from_secs(5)).await;
    let mut left_by = left.map(|s| {
        if s < INTERVAL.as_secs_f64() {
            "retry"
        } else {
            "interval"
        }
        .to_owned()
    });
    e.proxy.remove_rule(rule);
    let fired = e.proxy.fired(rule);
    if left.is_none() {
        let t = Instant::now();
        e.bed
            .start_helm_controller(None)
            .await
            .expect("helm-controller restarted");
        if let Some(s) = watch_until_ready(&e, ALONE, INTERVAL + Duration::from_secs(10)).await {
            left = Some(created.elapsed().as_secs_f64() - t.elapsed().as_secs_f64() + s);
            left_by = Some("restart".to_owned());
        }
    }
    let observed = created.elapsed().as_secs_f64();
    let restarts = u32::from(left.is_none() || left_by.as_deref() == Some("restart"));
    let (stuck, left_signature) = match left {
        Some(_) => (first, Some(signature(&e, ALONE).await)),
        None => (signature(&e, ALONE).await, None),
    };
    past_threshold(created).await;
    let (reason, branch, explain_reason) = decide(&e).await;
    let before = hr(&e, FIXED).await;
    let mark = e.proxy.requests().last().map(|x| x.id).unwrap_or(0);
    let result = act(&e).await;
    let mut notes = vec![format!(
        "the proxy answered 409 to {fired} conditions PATCHes carrying Released/UpgradeSucceeded"
    )];
    let recovered = result.is_some().then_some(is_ready(&hr(&e, FIXED).await));
    let stays = match recovered {
        Some(true) => Some(stays_ready(&e, mark, &mut notes).await),
        _ => None,
    };
    let dependents = Some(dependent_ready(&e).await);
    let (nothing_else, others) = nothing_else(&e);
    notes.extend(others.into_iter().map(|w| format!("other write: {w}")));
    let after = hr(&e, FIXED).await;
    Record {
        version: e.version.clone(),
        state: "5a".into(),
        state_title: Some(
            "`Released=False` left by a failed install, the successful upgrade's Ready write lost"
                .into(),
        ),
        mechanism: format!(
            "install of slow-install times out (spec.timeout 5s), values changed, the controller upgrades; the fault proxy answers 409 to every /status PATCH whose conditions carry Released/UpgradeSucceeded ({fired} of them)"
        ),
        interval_seconds: INTERVAL.as_secs_f64(),
        alone: Alone {
            left_by_itself: left.is_some(),
            after_seconds: left,
            left_by,
            observed_seconds: observed,
            restarts,
            signature: stuck,
            left_signature,
        },
        decision: Decision {
            reason,
            explain_reason,
            branch,
            result,
        },
        recovered,
        stays,
        dependents,
        nothing_else,
        before: trimmed(before),
        after: trimmed(after),
        notes,
    }
}

fn cond<'a>(s: &'a Signature, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// The cell as measured on every version so far; a change fails here.
fn assert_cell(r: &Record) {
    let dump = serde_json::to_string_pretty(r).unwrap_or_default();
    let sig = &r.alone.signature;
    match r.state.as_str() {
        "1" => {
            assert_eq!(
                cond(sig, "Ready").map(|c| c.status.as_str()),
                Some("Unknown"),
                "{dump}"
            );
            assert!(cond(sig, "Released").is_none(), "{dump}");
            assert_eq!(
                sig.history0.as_ref().map(|h| h.status.as_str()),
                Some("deployed"),
                "{dump}"
            );
            assert!(
                !r.alone.left_by_itself,
                "the controller never leaves state 1: {dump}"
            );
            assert_eq!(r.decision.reason, "deployed-but-unknown-ready", "{dump}");
            assert_eq!(r.decision.result.as_deref(), Some("succeeded"), "{dump}");
            assert_eq!(r.recovered, Some(true), "{dump}");
            assert_eq!(r.stays, Some(true), "{dump}");
        }
        "2" => {
            assert!(r.alone.left_by_itself, "state 2 heals by itself: {dump}");
            assert!(
                r.alone
                    .after_seconds
                    .is_some_and(|s| s < INTERVAL.as_secs_f64()),
                "healed by the retry, before the interval: {dump}"
            );
            assert_eq!(r.decision.reason, "ready", "{dump}");
        }
        "3" => {
            assert!(sig.history0.is_none(), "{dump}");
            assert_eq!(
                sig.storage.as_ref().map(|s| s.status.as_str()),
                Some("deployed"),
                "{dump}"
            );
            assert_eq!(r.decision.reason, "pending-install-but-deployed", "{dump}");
            assert!(r.alone.left_by_itself, "the restart heals state 3: {dump}");
            assert_eq!(r.recovered, Some(true), "{dump}");
            assert_eq!(r.stays, Some(true), "{dump}");
        }
        "4" => {
            assert!(sig.history0.is_none(), "{dump}");
            assert_eq!(
                sig.storage.as_ref().map(|s| s.status.as_str()),
                Some("pending-install"),
                "{dump}"
            );
            assert_eq!(r.decision.reason, "helm-release-pending", "{dump}");
            assert!(
                r.alone.left_by_itself,
                "the restart unlocks and upgrades: {dump}"
            );
        }
        "5a" if r.version == "v1.4.3" => {
            // Before PR #1411 the summary copies Released=False into Ready.
            assert_eq!(
                cond(sig, "Ready").map(|c| c.status.as_str()),
                Some("False"),
                "{dump}"
            );
            assert_eq!(
                cond(sig, "Released").map(|c| c.reason.as_str()),
                Some("InstallFailed"),
                "{dump}"
            );
            assert!(!r.alone.left_by_itself, "{dump}");
            assert_eq!(r.decision.reason, "not-ready", "{dump}");
            assert_eq!(
                r.dependents,
                Some(false),
                "the dependent stays blocked: {dump}"
            );
            assert!(r.nothing_else, "{dump}");
            assert_eq!(r.decision.reason, r.decision.explain_reason, "{dump}");
            return;
        }
        "5a" => {
            // PR #1411: the in-sync reconcile turns Released=False/InstallFailed True.
            assert!(r.alone.left_by_itself, "{dump}");
            assert_eq!(r.decision.reason, "ready", "{dump}");
        }
        other => panic!("no expectation for state {other}"),
    }
    assert_eq!(r.decision.reason, r.decision.explain_reason, "{dump}");
    assert_eq!(r.dependents, Some(true), "{dump}");
    assert!(r.nothing_else, "{dump}");
}

async fn cell(version: &str, state: &str) {
    let record = match state {
        "1" => state_1(version).await,
        "2" => state_2(version).await,
        "3" | "4" => state_killed(version, state).await,
        "5a" => state_5a(version).await,
        other => panic!("no state {other}"),
    };
    write(&record);
    assert_cell(&record);
}

macro_rules! cells {
    ($($name:ident: $version:literal, $state:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            cell($version, $state).await;
        }
    )*};
}

cells! {
    v1_4_3_state_1: "v1.4.3", "1";
    v1_4_3_state_2: "v1.4.3", "2";
    v1_4_3_state_3: "v1.4.3", "3";
    v1_4_3_state_4: "v1.4.3", "4";
    v1_6_3_state_1: "v1.6.3", "1";
    v1_6_3_state_2: "v1.6.3", "2";
    v1_6_3_state_3: "v1.6.3", "3";
    v1_6_3_state_4: "v1.6.3", "4";
    v1_6_4_state_1: "v1.6.4", "1";
    v1_6_4_state_2: "v1.6.4", "2";
    v1_6_4_state_3: "v1.6.4", "3";
    v1_6_4_state_4: "v1.6.4", "4";
    v1_4_3_state_5a: "v1.4.3", "5a";
    v1_6_3_state_5a: "v1.6.3", "5a";
    v1_6_4_state_5a: "v1.6.4", "5a";
}
