//! `stuck-hr-recovery explain <namespace>/<name>` (SPEC §10): why one
//! HelmRelease gets its outcome.
//!
//! Pure: given that one HelmRelease (and its Helm storage only when the
//! decision needs it, read by the `explain` handler in `app` as a run would), walks [`TABLE`](crate::decide::TABLE) — the
//! same rows [`decide`](crate::decide::decide) walks — and shows every row
//! tried with its check, the outcome, and for an action the JSON patches a
//! run would send now. It never writes.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::decide::{Facts, LatestRevision, Storage, StorageFact, Walked, walk};
use crate::failure::Failure;
use crate::model::{Branch, Reason, annotations};
use crate::patches::with_resource_version as rv;
use crate::patches::{
    annotation_patch, clear_marker_patch, resume_patch, status_patch, suspend_patch,
};
use crate::view::HelmReleaseView;

/// Stands for the `resourceVersion` a patch takes from the answer to the
/// patch before it, which `explain` cannot know.
pub const FROM_PREVIOUS_ANSWER: &str = "<resourceVersion from the answer to the previous patch>";

/// What `explain` says about the guardrail, which it cannot judge.
pub const GUARDRAIL_NOTE: &str = "a run also applies the guardrail (--max-actions), which counts \
     the recoveries planned in the whole scope; explain reads only this HelmRelease";

/// The HelmRelease to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

/// One row of the table as tried on this HelmRelease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowRecord {
    pub reason: Reason,
    pub matched: bool,
    pub why: String,
}

/// One patch a run would send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchRecord {
    /// Empty for the object itself, `status` for the status subresource.
    pub subresource: &'static str,
    pub body: Value,
}

/// A condition as the facts show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionFact {
    pub status: String,
    pub reason: Option<String>,
    pub last_transition_time: Option<String>,
}

/// Ready with its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyFact {
    #[serde(flatten)]
    pub condition: ConditionFact,
    /// SPEC §3's age (`5m`, `90s`); `None` when a timestamp it needs is bad.
    pub age: Option<String>,
}

/// history[0].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFact {
    pub version: Option<i64>,
    pub status: Option<String>,
    pub action: Option<String>,
    pub chart_name: Option<String>,
    pub chart_version: Option<String>,
}

/// What was read of Helm storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmStorageFact {
    /// False when the decision did not need it (it was not read).
    pub read: bool,
    /// The latest revision; `None` when not read or no release Secret.
    pub latest: Option<RevisionFact>,
    /// Why it could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionFact {
    pub version: u64,
    pub status: String,
}

/// Our annotations (raw values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationFacts {
    pub auto_corrected_at: Option<String>,
    pub suspended_at: Option<String>,
    pub toggled_at: Option<String>,
}

/// The facts the table reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FactsRecord {
    pub deleting: bool,
    pub suspend: bool,
    pub generation: Option<i64>,
    pub last_attempted_generation: Option<i64>,
    pub ready: Option<ReadyFact>,
    pub reconciling: Option<ConditionFact>,
    pub remediated: bool,
    pub history0: Option<SnapshotFact>,
    pub release_name: String,
    pub storage_namespace: String,
    pub helm_storage: HelmStorageFact,
    pub annotations: AnnotationFacts,
}

/// The whole explanation (SPEC §10's `-o json` document).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub namespace: String,
    pub name: String,
    pub facts: FactsRecord,
    /// Every row tried, in table order; the last one matched.
    pub rows: Vec<RowRecord>,
    pub reason: Reason,
    /// The branch name, or `skip`.
    pub branch: &'static str,
    /// The patches a run would send now, in order (empty for a skip).
    pub patches: Vec<PatchRecord>,
    pub note: &'static str,
}

/// Explains one HelmRelease. Pure: `storage` is the fact read for
/// [`crate::decide::storage_needed`]'s release (`None` when it was not
/// needed, or — where it was needed — not readable).
pub fn explain(
    view: &HelmReleaseView,
    storage: Option<&StorageFact>,
    now: DateTime<Utc>,
    config: &Config,
) -> Explanation {
    let given = match storage {
        Some(fact) => Storage::given(Some(fact)),
        None => Storage::NotRead,
    };
    let facts = Facts::new(view, given, now, config);
    let mut rows = Vec::new();
    let walked = walk(&facts, |row, check| {
        rows.push(RowRecord {
            reason: row.reason,
            matched: check.matched,
            why: check.why.clone(),
        });
    });
    let decision = match walked {
        Walked::Decided(decision) => decision,
        // Storage was needed but not given: what `decide` says then.
        Walked::NeedsStorage => {
            return explain(
                view,
                Some(&StorageFact::Unreadable(Failure::NotRead)),
                now,
                config,
            );
        }
    };
    Explanation {
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        facts: facts_record(view, &facts, storage),
        rows,
        reason: decision.reason,
        branch: decision.branch.map_or("skip", Branch::as_str),
        patches: decision
            .branch
            .map(|b| patches(view, b, now))
            .unwrap_or_default(),
        note: GUARDRAIL_NOTE,
    }
}

/// The patches a run sends for `branch`, in order. A later patch carries
/// the `resourceVersion` the earlier one's answer returns
/// ([`FROM_PREVIOUS_ANSWER`]).
pub fn patches(view: &HelmReleaseView, branch: Branch, now: DateTime<Utc>) -> Vec<PatchRecord> {
    let object = |body| PatchRecord {
        subresource: "",
        body,
    };
    match branch {
        Branch::CorrectStatus => vec![
            object(rv(annotation_patch(now), &view.resource_version)),
            PatchRecord {
                subresource: "status",
                body: rv(status_patch(view, now), FROM_PREVIOUS_ANSWER),
            },
        ],
        Branch::ToggleSuspend => vec![
            object(rv(suspend_patch(now), &view.resource_version)),
            object(rv(resume_patch(now), FROM_PREVIOUS_ANSWER)),
        ],
        Branch::Resume => vec![object(rv(resume_patch(now), &view.resource_version))],
        Branch::ClearMarker => vec![object(rv(clear_marker_patch(), &view.resource_version))],
    }
}

fn facts_record(
    view: &HelmReleaseView,
    facts: &Facts<'_>,
    storage: Option<&StorageFact>,
) -> FactsRecord {
    let condition = |type_: &str| {
        view.condition(type_).map(|c| ConditionFact {
            status: c.status.clone(),
            reason: c.reason.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
    };
    let revision = |l: &LatestRevision| RevisionFact {
        version: l.version,
        status: l.status.clone(),
    };
    let annotation = |key: &str| view.annotation(key).map(str::to_string);
    FactsRecord {
        deleting: view.deleting,
        suspend: view.suspend,
        generation: view.generation,
        last_attempted_generation: view.last_attempted_generation,
        ready: condition("Ready").map(|condition| ReadyFact {
            condition,
            age: facts.age().map(crate::decide::format_age),
        }),
        reconciling: condition("Reconciling"),
        remediated: view.condition("Remediated").is_some(),
        history0: view.history.first().map(|h| SnapshotFact {
            version: h.version,
            status: h.status.clone(),
            action: h.action.clone(),
            chart_name: h.chart_name.clone(),
            chart_version: h.chart_version.clone(),
        }),
        release_name: view.release_name(),
        storage_namespace: view.storage_namespace().to_string(),
        helm_storage: match storage {
            None => HelmStorageFact {
                read: false,
                latest: None,
                error: None,
            },
            Some(StorageFact::Latest(latest)) => HelmStorageFact {
                read: true,
                latest: latest.as_ref().map(revision),
                error: None,
            },
            Some(StorageFact::Unreadable(why)) => HelmStorageFact {
                read: true,
                latest: None,
                error: Some(why.to_string()),
            },
        },
        annotations: AnnotationFacts {
            auto_corrected_at: annotation(annotations::AUTO_CORRECTED_AT),
            suspended_at: annotation(annotations::SUSPENDED_AT),
            toggled_at: annotation(annotations::TOGGLED_AT),
        },
    }
}

/// `-o text`: the facts, the rows tried, the outcome, the patches.
pub fn render_text(e: &Explanation) -> String {
    let mut out = String::new();
    let f = &e.facts;
    let _ = writeln!(out, "HelmRelease {}/{}", e.namespace, e.name);
    let _ = writeln!(out, "facts:");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let num = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "  deleting={} suspend={} generation={} lastAttemptedGeneration={}",
        f.deleting,
        f.suspend,
        num(f.generation),
        num(f.last_attempted_generation)
    );
    match &f.ready {
        None => out.push_str("  Ready: none\n"),
        Some(r) => {
            let _ = writeln!(
                out,
                "  Ready: {} reason={} since={} age={}",
                r.condition.status,
                opt(&r.condition.reason),
                opt(&r.condition.last_transition_time),
                opt(&r.age)
            );
        }
    }
    match &f.reconciling {
        None => out.push_str("  Reconciling: none\n"),
        Some(c) => {
            let _ = writeln!(
                out,
                "  Reconciling: {} since={}",
                c.status,
                opt(&c.last_transition_time)
            );
        }
    }
    let _ = writeln!(out, "  Remediated: {}", f.remediated);
    match &f.history0 {
        None => out.push_str("  history[0]: none (history empty)\n"),
        Some(h) => {
            let _ = writeln!(
                out,
                "  history[0]: version={} status={} action={} chart={}@{}",
                num(h.version),
                opt(&h.status),
                opt(&h.action),
                opt(&h.chart_name),
                opt(&h.chart_version)
            );
        }
    }
    let _ = writeln!(
        out,
        "  release: {} in storage namespace {}",
        f.release_name, f.storage_namespace
    );
    let storage = match (
        &f.helm_storage.read,
        &f.helm_storage.latest,
        &f.helm_storage.error,
    ) {
        (false, _, _) => "not read (the decision does not need it)".to_string(),
        (true, _, Some(error)) => format!("unreadable: {error}"),
        (true, Some(l), None) => format!("latest revision {} {}", l.version, l.status),
        (true, None, None) => "no release Secret".to_string(),
    };
    let _ = writeln!(out, "  Helm storage: {storage}");
    let a = &f.annotations;
    let _ = writeln!(
        out,
        "  annotations: auto-corrected-at={} suspended-at={} toggled-at={}",
        opt(&a.auto_corrected_at),
        opt(&a.suspended_at),
        opt(&a.toggled_at)
    );
    out.push_str("rows:\n");
    for r in &e.rows {
        let verdict = if r.matched { "MATCH" } else { "no" };
        let _ = writeln!(out, "  {:<5} {:<28} {}", verdict, r.reason.as_str(), r.why);
    }
    let _ = writeln!(out, "outcome: {} {}", e.branch, e.reason);
    for (i, p) in e.patches.iter().enumerate() {
        let target = if p.subresource.is_empty() {
            "object"
        } else {
            p.subresource
        };
        let _ = writeln!(
            out,
            "patch {} ({target}, JSON merge patch): {}",
            i + 1,
            serde_json::to_string(&p.body).unwrap_or_default()
        );
    }
    let _ = writeln!(out, "note: {}", e.note);
    out
}

/// `-o json`: one pretty-printed document, newline-terminated.
pub fn render_json(e: &Explanation) -> String {
    match serde_json::to_string_pretty(e) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(error) => format!("{{\"error\": {:?}}}\n", error.to_string()),
    }
}

#[cfg(test)]
mod tests;
