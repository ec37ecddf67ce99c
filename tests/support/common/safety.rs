//! The safety harness (issue 4): a cluster with one HelmRelease per branch,
//! each in its own namespace so every write and Event of a run can be named
//! by `(method, resource, subresource, namespace, name, n-th)` and failed on
//! its own; the invariants every run must leave behind; signals from fault
//! hooks; and the RBAC tally of every cluster a test started.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::{Fault, RecordedRequest, RuleRef};
use serde_json::Value;

use super::*;

/// The namespace of each branch's HelmRelease (each named [`HR_NAME`]).
pub const CORRECT_NS: &str = "correct";
pub const TOGGLE_NS: &str = "toggle";
pub const RESUME_NS: &str = "resume";
pub const CLEAR_NS: &str = "clear";
pub const HEALTHY_NS: &str = "healthy";
pub const HR_NAME: &str = "hr";

/// The run's deadline in the fault runs: short, so a delayed answer
/// outlives it quickly.
pub const TIMEOUT: &str = "5s";
/// Longer than `TIMEOUT` plus the product's clean-up grace (5 s): the client
/// gives up on a delayed write, even a resume. (The fake server then drops
/// the request with the connection: it is never applied.)
pub const DELAY: Duration = Duration::from_secs(15);
/// The longest a fault run may take: `TIMEOUT`, the clean-up grace, slack.
pub const RUN_BOUND: Duration = Duration::from_secs(5 + 5 + 3);
/// `--suspend-wait` of every safety run.
pub const SUSPEND_WAIT: &str = "200ms";

/// A cluster enforcing the RBAC files of `rbac_dir` instead of `rbac/`.
pub fn cluster_with_rbac(rbac_dir: &std::path::Path) -> Cluster {
    let server = fake_apiserver::FakeApiServer::start(
        fake_apiserver::ServerConfig::new()
            .rbac_dir(rbac_dir)
            .service_account(SA_NAMESPACE, SA_NAME),
    )
    .expect("fake API server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, SA_USER)
        .expect("kubeconfig written");
    Cluster {
        server: Arc::new(server),
        dir,
        kubeconfig,
    }
}

/// One HelmRelease per branch (correct-status, toggle-suspend, resume,
/// clear-marker) and a healthy one, each in its own namespace.
pub fn seed_every_branch(cluster: &Cluster) {
    cluster.seed(stuck_deployed(CORRECT_NS, HR_NAME));
    cluster.seed(stuck_pending(TOGGLE_NS, HR_NAME));
    cluster.seed([
        Hr::interrupted_toggle(RESUME_NS, HR_NAME).build(),
        helm_secret(RESUME_NS, HR_NAME, 1, "deployed"),
        Hr::stale_marker(CLEAR_NS, HR_NAME).build(),
        Hr::healthy(HEALTHY_NS, HR_NAME).build(),
    ]);
}

/// Arguments of a fault run: JSON report, short wait and deadline.
pub fn fault_run_args() -> Vec<&'static str> {
    vec![
        "-o",
        "json",
        "--suspend-wait",
        SUSPEND_WAIT,
        "--timeout",
        TIMEOUT,
    ]
}

/// Arguments of the run after a fault or a crash: the same, a cooldown
/// later (`--cooldown 1ms`: the cooldown clauses no longer hold anything
/// back, so a suspension the first run left is resumed and a toggle may be
/// repeated). A half-done correction is still held: its annotation is at
/// or after Ready's `lastTransitionTime`, so SPEC §3 decides it
/// `already-corrected` whatever the cooldown (see
/// [`held_half_done_violations`]).
pub fn rerun_args() -> Vec<&'static str> {
    vec![
        "-o",
        "json",
        "--suspend-wait",
        SUSPEND_WAIT,
        "--timeout",
        "20s",
        "--cooldown",
        "1ms",
    ]
}

/// A clean run over [`seed_every_branch`]: asserts it acted on the four
/// HelmReleases and left nothing behind, and returns its writes.
pub fn clean_run_writes() -> Vec<WriteKey> {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["counts"]["acted"], 4, "{}", describe(&out));
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    let requests = cluster.requests();
    assert_eq!(
        writes_outside_plan(&requests, &report, &BTreeSet::new()),
        Vec::<String>::new()
    );
    cluster.assert_nothing_denied();
    write_keys(&requests)
}

/// `namespace/name` of the HelmRelease of every branch.
pub fn every_branch_objects() -> BTreeSet<String> {
    [CORRECT_NS, TOGGLE_NS, RESUME_NS, CLEAR_NS]
        .iter()
        .map(|ns| format!("{ns}/{HR_NAME}"))
        .collect()
}

/// Is this request a write (anything but reads and discovery)?
pub fn is_write(r: &RecordedRequest) -> bool {
    !matches!(r.verb.as_str(), "get" | "list" | "watch" | "discovery")
}

/// One write of a run, named so that a [`Fault`] hits exactly it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteKey {
    pub method: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: String,
    /// `None` for a create (the name is in the body).
    pub name: Option<String>,
    /// 1-based among the requests with the same fields above.
    pub nth: u64,
}

impl WriteKey {
    /// A fault matching exactly this write (with no action yet).
    pub fn fault(&self) -> Fault {
        let mut fault = Fault::on(&self.method, &self.resource, self.subresource.as_deref())
            .namespace(&self.namespace)
            .nth(self.nth);
        if let Some(name) = &self.name {
            fault = fault.name(name);
        }
        fault
    }

    pub fn is_event(&self) -> bool {
        self.resource == "events"
    }

    /// Whether a recorded request is this write.
    pub fn same_target(&self, r: &RecordedRequest) -> bool {
        r.method == self.method
            && r.resource.as_deref() == Some(self.resource.as_str())
            && r.subresource == self.subresource
            && r.namespace.as_deref() == Some(self.namespace.as_str())
            && r.name == self.name
    }
}

impl std::fmt::Display for WriteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sub = self
            .subresource
            .as_ref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        let name = self.name.as_deref().unwrap_or("*");
        write!(
            f,
            "{} {}{sub} {}/{name} #{}",
            self.method, self.resource, self.namespace, self.nth
        )
    }
}

/// The writes among `requests`, in arrival order, each with its n-th.
pub fn write_keys(requests: &[RecordedRequest]) -> Vec<WriteKey> {
    type Target = (String, String, Option<String>, String, Option<String>);
    let mut seen: BTreeMap<Target, u64> = BTreeMap::new();
    let mut keys = Vec::new();
    for r in requests.iter().filter(|r| is_write(r)) {
        let id = (
            r.method.clone(),
            r.resource.clone().unwrap_or_default(),
            r.subresource.clone(),
            r.namespace.clone().unwrap_or_default(),
            r.name.clone(),
        );
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        keys.push(WriteKey {
            method: id.0,
            resource: id.1,
            subresource: id.2,
            namespace: id.3,
            name: id.4,
            nth: *n,
        });
    }
    keys
}

/// The requests with a sequence number above `after`.
pub fn requests_after(cluster: &Cluster, after: u64) -> Vec<RecordedRequest> {
    cluster
        .requests()
        .into_iter()
        .filter(|r| r.seq > after)
        .collect()
}

/// The highest sequence number logged so far.
pub fn last_seq(cluster: &Cluster) -> u64 {
    cluster.requests().last().map_or(0, |r| r.seq)
}

/// What a run must never leave behind, whatever failed: a HelmRelease
/// suspended with our marker, or our `auto-corrected-at` without Ready
/// True. Returns one line per violation.
pub fn end_state_violations(cluster: &Cluster) -> Vec<String> {
    end_state_violations_except(cluster, &BTreeSet::new())
}

/// [`end_state_violations`], except for the half-done corrections named in
/// `held` (`namespace/name`): the one residue SPEC §3 allows, which the
/// caller has shown to be exactly that (a kill between branch B's two
/// writes, or a failed status patch whose rollback failed too, reported so;
/// then held by the rerun as [`held_half_done_violations`] checks).
pub fn end_state_violations_except(cluster: &Cluster, held: &BTreeSet<String>) -> Vec<String> {
    let mut violations = Vec::new();
    for hr in cluster.server.helmreleases() {
        let id = format!(
            "{}/{}",
            hr["metadata"]["namespace"].as_str().unwrap_or_default(),
            hr["metadata"]["name"].as_str().unwrap_or_default()
        );
        if hr["spec"]["suspend"] == Value::Bool(true) && annotation(&hr, SUSPENDED_AT).is_some() {
            violations.push(format!("{id} left suspended with our marker"));
        }
        if is_half_done(&hr) && !held.contains(&id) {
            let ready = find_condition(&hr, "Ready").map(|c| c["status"].clone());
            violations.push(format!(
                "{id} carries auto-corrected-at but Ready is {ready:?}"
            ));
        }
    }
    violations
}

/// A half-done correction: our `auto-corrected-at` without Ready True.
pub fn is_half_done(hr: &Value) -> bool {
    annotation(hr, CORRECTED_AT).is_some()
        && find_condition(hr, "Ready").map(|c| &c["status"]) != Some(&Value::from("True"))
}

/// `namespace/name` of every half-done correction in the cluster.
pub fn half_done_corrections(cluster: &Cluster) -> BTreeSet<String> {
    cluster
        .server
        .helmreleases()
        .iter()
        .filter(|hr| is_half_done(hr))
        .map(|hr| {
            format!(
                "{}/{}",
                hr["metadata"]["namespace"].as_str().unwrap_or_default(),
                hr["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// What a run must show for a half-done correction of `namespace/name` it
/// found (SPEC §3: our annotation is at or after Ready's
/// `lastTransitionTime`, so this Unknown episode counts as corrected, and
/// it is never corrected twice — however long ago the cooldown ended): the
/// HelmRelease listed as a skip with reason `already-corrected` and counted
/// in `stuck`, no action for it, not one write request to it in `requests`
/// (the run's), and its status exactly as `before` the run — Ready still
/// Unknown, no Ready True the controller did not write. One line per
/// violation.
pub fn held_half_done_violations(
    namespace: &str,
    name: &str,
    report: &Value,
    requests: &[RecordedRequest],
    before: &Value,
    after: &Value,
) -> Vec<String> {
    let id = format!("{namespace}/{name}");
    let mut violations = Vec::new();
    let held = skip_of(report, namespace, name).is_some_and(|s| s["reason"] == "already-corrected");
    if !held {
        violations.push(format!(
            "{id}: the half-done correction is not listed as an already-corrected skip"
        ));
    }
    if report["counts"]["stuck"].as_u64().unwrap_or_default() == 0 {
        violations.push(format!(
            "{id}: the half-done correction is not counted in stuck"
        ));
    }
    if let Some(action) = action_of(report, namespace, name) {
        violations.push(format!("{id}: acted on although half done: {action}"));
    }
    for r in requests.iter().filter(|r| is_write(r)) {
        let about = r.resource.as_deref() == Some("helmreleases")
            && r.namespace.as_deref() == Some(namespace)
            && r.name.as_deref() == Some(name);
        if about {
            violations.push(format!(
                "{id}: {} {} written ({})",
                r.method, r.path, r.status
            ));
        }
    }
    if after["status"] != before["status"] {
        violations.push(format!(
            "{id}: status changed although held: {} -> {}",
            before["status"], after["status"]
        ));
    }
    let ready = find_condition(after, "Ready").map(|c| c["status"].clone());
    if ready != Some(Value::from("Unknown")) {
        violations.push(format!("{id}: Ready is {ready:?}, not still Unknown"));
    }
    violations
}
/// The `namespace/name` of every action in a report.
pub fn planned_objects(report: &Value) -> BTreeSet<String> {
    report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{}/{}",
                a["namespace"].as_str().unwrap_or_default(),
                a["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Writes among `requests` that the server applied to something outside
/// the report's actions: a HelmRelease not acted on, an Event about one, or
/// any other resource. `also` names objects the caller allows besides
/// (e.g. a run whose report was lost to SIGKILL). One line per violation.
pub fn writes_outside_plan(
    requests: &[RecordedRequest],
    report: &Value,
    also: &BTreeSet<String>,
) -> Vec<String> {
    let planned = planned_objects(report);
    let allowed = |id: &str| planned.contains(id) || also.contains(id);
    let mut violations = Vec::new();
    for r in requests.iter().filter(|r| is_write(r)) {
        if !(200..300).contains(&r.status) {
            continue;
        }
        let ns = r.namespace.as_deref().unwrap_or_default();
        match r.resource.as_deref() {
            Some("helmreleases") => {
                let id = format!("{ns}/{}", r.name.as_deref().unwrap_or_default());
                if !allowed(&id) {
                    violations.push(format!("{} {} wrote {id}, not planned", r.method, r.path));
                }
            }
            Some("events") => {
                let regarding = r
                    .body
                    .as_ref()
                    .map(|b| {
                        format!(
                            "{}/{}",
                            b["regarding"]["namespace"].as_str().unwrap_or_default(),
                            b["regarding"]["name"].as_str().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                let patch = r.method == "PATCH";
                if !patch && !allowed(&regarding) {
                    violations.push(format!("Event about {regarding}, not planned"));
                }
            }
            other => violations.push(format!("{} {} ({other:?})", r.method, r.path)),
        }
    }
    violations
}

/// Spawns the binary with `args`; `pid` is set as soon as it runs, so a
/// fault hook can signal it.
pub fn spawn_with_pid(cluster: &Cluster, args: &[&str], pid: &AtomicU32) -> std::process::Child {
    let child = cluster
        .std_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    pid.store(child.id(), Ordering::SeqCst);
    child
}

/// A hook that sends `signal` (`KILL`, `TERM`, `INT`) to the process whose
/// id `pid` holds, and returns once `kill` did.
pub fn signal_hook(pid: Arc<AtomicU32>, signal: &'static str) -> fake_apiserver::Hook {
    Arc::new(move |_| {
        let started = Instant::now();
        let mut id = pid.load(Ordering::SeqCst);
        while id == 0 && started.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
            id = pid.load(Ordering::SeqCst);
        }
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(id.to_string())
            .status();
    })
}

/// [`signal_hook`] that also records when it fired.
pub fn timed_signal_hook(
    pid: Arc<AtomicU32>,
    signal: &'static str,
    fired: Arc<Mutex<Option<Instant>>>,
) -> fake_apiserver::Hook {
    let send = signal_hook(pid, signal);
    Arc::new(move |r| {
        send(r);
        if let Ok(mut at) = fired.lock() {
            at.get_or_insert_with(Instant::now);
        }
    })
}

/// A hook that applies a HelmRelease merge patch itself (as the API server
/// would: only when its `resourceVersion` precondition holds; the status
/// subresource takes only `status`, the object everything else), so that
/// with `drop_connection()` the write lands but its answer is lost — what a
/// real API server does with a request the client gave up on.
pub fn apply_then_lose_answer(
    server: std::sync::Weak<fake_apiserver::FakeApiServer>,
) -> fake_apiserver::Hook {
    Arc::new(move |r| {
        let (Some(server), Some(body), Some(ns), Some(name)) = (
            server.upgrade(),
            r.body.as_ref(),
            r.namespace.as_deref(),
            r.name.as_deref(),
        ) else {
            return;
        };
        if r.resource.as_deref() != Some("helmreleases") {
            return;
        }
        let Some(mut object) = server.helmrelease(ns, name) else {
            return;
        };
        let wanted = &body["metadata"]["resourceVersion"];
        if !wanted.is_null() && *wanted != object["metadata"]["resourceVersion"] {
            return;
        }
        if r.subresource.as_deref() == Some("status") {
            merge_patch(&mut object["status"], &body["status"]);
        } else {
            let mut patch = body.clone();
            if let Some(p) = patch.as_object_mut() {
                p.remove("status");
            }
            merge_patch(&mut object, &patch);
        }
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let _ = server.apply(object);
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Waits until the server logged `count` requests matching `key`'s target
/// (a delayed request is logged once answered), at most `limit`.
pub fn wait_logged(cluster: &Cluster, key: &WriteKey, count: u64, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        let logged = cluster
            .requests()
            .iter()
            .filter(|r| key.same_target(r))
            .count() as u64;
        if logged >= count {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the request log has not grown for 100 ms (at most 5 s): a
/// killed binary's requests still in flight have been served.
pub fn wait_quiet(cluster: &Cluster) {
    let started = Instant::now();
    let mut last = (cluster.requests().len(), Instant::now());
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        let now = cluster.requests().len();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(100) {
            return;
        }
    }
}

/// Runs to completion and returns the output with its wall time.
pub fn timed_run(cluster: &Cluster, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = cluster.run(args);
    (out, started.elapsed())
}

/// Every RBAC rule's use count and every denial, summed over the clusters
/// of a test binary (rules are keyed without their file, so tallies of
/// copies of `rbac/` add up).
#[derive(Default)]
pub struct RbacLedger {
    used: Mutex<BTreeMap<String, u64>>,
    verbs: Mutex<BTreeSet<String>>,
    denied: Mutex<Vec<String>>,
}

impl RbacLedger {
    /// Adds one cluster's tally and the verbs its requests used per
    /// `group/resource[/subresource]`.
    pub fn add(&self, cluster: &Cluster) {
        let tally = cluster.server.rbac_tally();
        if let Ok(mut used) = self.used.lock() {
            for (rule, n) in &tally.used {
                *used.entry(rule_name(rule)).or_default() += n;
            }
        }
        if let Ok(mut denied) = self.denied.lock() {
            denied.extend(
                tally
                    .denied
                    .iter()
                    .map(|r| format!("{} {} as {}", r.method, r.path, r.user)),
            );
        }
        if let Ok(mut verbs) = self.verbs.lock() {
            for r in cluster.requests() {
                if r.user == SA_USER
                    && (200..300).contains(&r.status)
                    && let Some(resource) = r.resource_path()
                {
                    verbs.insert(format!("{}/{resource}:{}", r.group, r.verb));
                }
            }
        }
    }

    pub fn unused_rules(&self) -> Vec<String> {
        self.used
            .lock()
            .map(|u| {
                u.iter()
                    .filter(|(_, n)| **n == 0)
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn rules(&self) -> BTreeMap<String, u64> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// `group/resource[/sub]:verb` of every allowed request.
    pub fn verbs(&self) -> BTreeSet<String> {
        self.verbs.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn denied(&self) -> Vec<String> {
        self.denied.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

/// `ClusterRole/name: groups resources verbs` of one rule.
pub fn rule_name(rule: &RuleRef) -> String {
    format!(
        "{}/{}#{}: {:?} {:?} {:?}",
        rule.role_kind, rule.role, rule.index, rule.api_groups, rule.resources, rule.verbs
    )
}

/// The report's listed skip for `namespace/name`, if any.
pub fn skip_of<'a>(report: &'a Value, namespace: &str, name: &str) -> Option<&'a Value> {
    report["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["namespace"] == namespace && s["name"] == name)
}

/// The report's action for `namespace/name`, if any.
pub fn action_of<'a>(report: &'a Value, namespace: &str, name: &str) -> Option<&'a Value> {
    report["actions"]
        .as_array()?
        .iter()
        .find(|a| a["namespace"] == namespace && a["name"] == name)
}

/// Runs `jobs` on `workers` threads and returns their results in order.
pub fn parallel<T: Send, R: Send>(
    jobs: Vec<T>,
    workers: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let job = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((i, job)) = job else { break };
                    let r = work(job);
                    if let Ok(mut results) = results.lock() {
                        results.push((i, r));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
