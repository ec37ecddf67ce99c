//! Chainable fixture builders for deciding and planning tests.
//!
//! `hr("apps", "web")` starts from a healthy, reconciled HelmRelease (Ready
//! True, generation 1 attempted, empty history); each method changes one
//! aspect. The builder renders real HelmRelease JSON (field names from the
//! Flux CRD) and goes through [`HelmReleaseView::from_json`], so tests
//! exercise the parser too.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::decide::{Decision, LatestRevision, ReleaseRef, StorageFact};
use crate::failure::Failure;
use crate::model::{Reason, annotations};
use crate::plan::{Candidate, Plan, plan};
use crate::view::HelmReleaseView;

/// The fixed clock of every test.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

pub fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

pub fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `now` minus `d`, as RFC 3339.
pub fn ago(d: Duration) -> String {
    stamp(now() - TimeDelta::from_std(d).unwrap_or_default())
}

/// `now` plus `d`, as RFC 3339.
pub fn ahead(d: Duration) -> String {
    stamp(now() + TimeDelta::from_std(d).unwrap_or_default())
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A HelmRelease under construction.
#[derive(Debug, Clone)]
pub struct Hr {
    json: Value,
}

pub fn hr(namespace: &str, name: &str) -> Hr {
    Hr {
        json: json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": format!("uid-{namespace}-{name}"),
                "resourceVersion": "100",
                "generation": 1,
                "annotations": {},
            },
            "spec": {
                "interval": "5m",
                "chart": {"spec": {"chart": name, "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
            },
            "status": {
                "observedGeneration": 1,
                "lastAttemptedGeneration": 1,
                "conditions": [
                    condition("Ready", "True", &ago(minutes(60)))
                ],
                "history": [],
            },
        }),
    }
}

fn condition(type_: &str, status: &str, ltt: &str) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": "Fixture",
        "message": "set by a test fixture",
        "lastTransitionTime": ltt,
        "observedGeneration": 1,
    })
}

impl Hr {
    /// The rendered JSON.
    pub fn json(&self) -> Value {
        self.json.clone()
    }

    /// The view (panics in tests when the fixture is malformed).
    pub fn view(&self) -> HelmReleaseView {
        match HelmReleaseView::from_json(&self.json) {
            Ok(view) => view,
            Err(e) => panic!("fixture is malformed: {e}"),
        }
    }

    fn set(mut self, path: &[&str], value: Value) -> Self {
        let mut at = &mut self.json;
        for key in &path[..path.len() - 1] {
            if !at.get(*key).is_some_and(Value::is_object) {
                at[*key] = json!({});
            }
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        self
    }

    fn remove(mut self, path: &[&str]) -> Self {
        let mut at = &mut self.json;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        if let Some(map) = at.as_object_mut() {
            map.remove(path[path.len() - 1]);
        }
        self
    }

    fn conditions_mut(&mut self) -> &mut Vec<Value> {
        if !self.json["status"]["conditions"].is_array() {
            self.json["status"]["conditions"] = json!([]);
        }
        match self.json["status"]["conditions"].as_array_mut() {
            Some(list) => list,
            None => unreachable!("just set to a list"),
        }
    }

    /// Sets (or replaces) one condition.
    pub fn with_condition(mut self, type_: &str, status: &str, ltt: &str) -> Self {
        let list = self.conditions_mut();
        list.retain(|c| c["type"] != type_);
        list.push(condition(type_, status, ltt));
        self
    }

    fn without_condition(mut self, type_: &str) -> Self {
        self.conditions_mut().retain(|c| c["type"] != type_);
        self
    }

    pub fn ready_true(self) -> Self {
        self.with_condition("Ready", "True", &ago(minutes(60)))
    }

    pub fn ready_false_for(self, d: Duration) -> Self {
        self.with_condition("Ready", "False", &ago(d))
    }

    pub fn ready_unknown_for(self, d: Duration) -> Self {
        self.with_condition("Ready", "Unknown", &ago(d))
    }

    /// Ready Unknown with a raw `lastTransitionTime`.
    pub fn ready_unknown_since(self, ltt: &str) -> Self {
        self.with_condition("Ready", "Unknown", ltt)
    }

    /// Ready Unknown without a `lastTransitionTime` at all.
    pub fn ready_unknown_without_time(mut self) -> Self {
        self = self.ready_unknown_for(minutes(60));
        for c in self.conditions_mut() {
            if c["type"] == "Ready"
                && let Some(map) = c.as_object_mut()
            {
                map.remove("lastTransitionTime");
            }
        }
        self
    }

    pub fn no_ready_condition(self) -> Self {
        self.without_condition("Ready")
    }

    pub fn reconciling_true_for(self, d: Duration) -> Self {
        self.with_condition("Reconciling", "True", &ago(d))
    }

    pub fn reconciling_true_since(self, ltt: &str) -> Self {
        self.with_condition("Reconciling", "True", ltt)
    }

    pub fn reconciling_false_for(self, d: Duration) -> Self {
        self.with_condition("Reconciling", "False", &ago(d))
    }

    pub fn remediated(self) -> Self {
        self.with_condition("Remediated", "True", &ago(minutes(30)))
    }

    fn history_entry(status: &str, version: i64, action: &str) -> Value {
        json!({
            "name": "web",
            "namespace": "apps",
            "version": version,
            "status": status,
            "action": action,
            "chartName": "web",
            "chartVersion": "1.2.3",
            "configDigest": "sha256:0",
            "digest": "sha256:1",
            "firstDeployed": ago(minutes(120)),
            "lastDeployed": ago(minutes(60)),
        })
    }

    /// history[0] `deployed` at this version (by an upgrade), with one older
    /// superseded entry when the version is above 1.
    pub fn history_deployed(self, version: i64) -> Self {
        let mut entries = vec![Self::history_entry("deployed", version, "upgrade")];
        if version > 1 {
            entries.push(Self::history_entry("superseded", version - 1, "install"));
        }
        self.set(&["status", "history"], Value::Array(entries))
    }

    pub fn history_pending_install(self) -> Self {
        self.set(
            &["status", "history"],
            json!([Self::history_entry("pending-install", 1, "install")]),
        )
    }

    /// history[0] with any status, e.g. `failed` or `pending-upgrade`.
    pub fn history_status(self, status: &str, version: i64) -> Self {
        self.set(
            &["status", "history"],
            json!([Self::history_entry(status, version, "upgrade")]),
        )
    }

    pub fn history_empty(self) -> Self {
        self.set(&["status", "history"], json!([]))
    }

    pub fn no_history_field(self) -> Self {
        self.remove(&["status", "history"])
    }

    pub fn deleting(self) -> Self {
        self.set(&["metadata", "deletionTimestamp"], json!(ago(minutes(1))))
    }

    pub fn suspended(self) -> Self {
        self.set(&["spec", "suspend"], json!(true))
    }

    pub fn annotated(self, key: &str, value: &str) -> Self {
        self.set(&["metadata", "annotations", key], json!(value))
    }

    /// Our branch A marker, as a killed run leaves it.
    pub fn marker(self) -> Self {
        self.annotated(annotations::SUSPENDED_AT, &ago(minutes(3)))
    }

    pub fn corrected_ago(self, d: Duration) -> Self {
        self.annotated(annotations::AUTO_CORRECTED_AT, &ago(d))
    }

    pub fn toggled_ago(self, d: Duration) -> Self {
        self.annotated(annotations::TOGGLED_AT, &ago(d))
    }

    pub fn generation(self, generation: i64) -> Self {
        self.set(&["metadata", "generation"], json!(generation))
    }

    pub fn last_attempted_generation(self, generation: i64) -> Self {
        self.set(&["status", "lastAttemptedGeneration"], json!(generation))
    }

    pub fn no_last_attempted_generation(self) -> Self {
        self.remove(&["status", "lastAttemptedGeneration"])
    }

    pub fn release_name(self, name: &str) -> Self {
        self.set(&["spec", "releaseName"], json!(name))
    }

    pub fn target_namespace(self, namespace: &str) -> Self {
        self.set(&["spec", "targetNamespace"], json!(namespace))
    }

    pub fn spec_storage_namespace(self, namespace: &str) -> Self {
        self.set(&["spec", "storageNamespace"], json!(namespace))
    }

    pub fn status_storage_namespace(self, namespace: &str) -> Self {
        self.set(&["status", "storageNamespace"], json!(namespace))
    }

    /// Sets any field by path (for malformed-object tests).
    pub fn field(self, path: &[&str], value: Value) -> Self {
        self.set(path, value)
    }

    /// Shorthands for the two stuck modes, stuck for 6 minutes (threshold 5m).
    pub fn stuck_deployed(self, version: i64) -> Self {
        self.ready_unknown_for(minutes(6)).history_deployed(version)
    }

    pub fn stuck_pending_install(self) -> Self {
        self.ready_unknown_for(minutes(6)).history_pending_install()
    }
}

/// What Helm storage says about one release.
#[derive(Debug, Clone)]
pub enum Helm {
    /// Not read (or read but not handed to the plan).
    NotRead,
    /// No release Secret.
    NoRelease,
    /// Latest revision at this version with this status label.
    Latest(u64, &'static str),
    /// The list failed.
    Unreadable,
    /// Any fact.
    Fact(StorageFact),
}

impl Helm {
    pub fn deployed(version: u64) -> Helm {
        Helm::Latest(version, "deployed")
    }

    pub fn fact(&self) -> Option<StorageFact> {
        match self {
            Helm::NotRead => None,
            Helm::NoRelease => Some(StorageFact::Latest(None)),
            Helm::Latest(version, status) => Some(StorageFact::Latest(Some(LatestRevision {
                version: *version,
                status: (*status).to_string(),
            }))),
            Helm::Unreadable => Some(StorageFact::Unreadable(Failure::Step(
                "forbidden".to_string(),
            ))),
            Helm::Fact(fact) => Some(fact.clone()),
        }
    }
}

/// A small cluster: HelmReleases and their Helm storage.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    items: Vec<Value>,
    storage: HashMap<ReleaseRef, StorageFact>,
}

pub fn cluster() -> Cluster {
    Cluster::default()
}

impl Cluster {
    pub fn with(mut self, hr: Hr, helm: Helm) -> Self {
        if let (Ok(view), Some(fact)) = (HelmReleaseView::from_json(&hr.json), helm.fact()) {
            self.storage.insert(ReleaseRef::of(&view), fact);
        }
        self.items.push(hr.json);
        self
    }

    /// Adds raw JSON (possibly malformed).
    pub fn with_raw(mut self, item: Value) -> Self {
        self.items.push(item);
        self
    }

    pub fn plan(&self, config: &Config) -> Plan {
        let candidates = self
            .items
            .iter()
            .map(|item| match HelmReleaseView::from_json(item) {
                Ok(view) => Candidate::View(view),
                Err(m) => Candidate::Malformed(m),
            })
            .collect();
        plan(self.items.len(), candidates, &self.storage, now(), config)
    }
}

/// The decision for one HelmRelease, through `plan` with default config
/// (`ready` when the plan dropped it as healthy).
pub fn decided(hr: Hr, helm: Helm) -> Decision {
    decided_with(hr, helm, &Config::default())
}

pub fn decided_with(hr: Hr, helm: Helm, config: &Config) -> Decision {
    let plan = cluster().with(hr, helm).plan(config);
    plan.items
        .first()
        .map(|i| i.decision)
        .unwrap_or(Decision::skip(Reason::Ready))
}
