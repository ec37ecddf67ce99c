//! Every decision of a run plus the guardrail verdict, computed before any
//! write. Pure: no client, clock or logger in scope.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::blocks::Dependents;
use crate::config::Config;
use crate::decide::{Decision, ReleaseRef, StorageFact, decide, storage_needed};
use crate::model::Reason;
pub use crate::view::Candidate;
use crate::view::HelmReleaseView;

/// Shown when a malformed object has no readable namespace or name.
const UNKNOWN: &str = "<unknown>";

/// The decision for one HelmRelease.
#[derive(Debug, Clone)]
pub struct PlannedItem {
    pub namespace: String,
    pub name: String,
    pub decision: Decision,
    /// The view it was decided on (`None` for a malformed object).
    pub view: Option<HelmReleaseView>,
    /// Why the object is malformed (`Some` only for `malformed`).
    pub problem: Option<String>,
    /// The HelmReleases in scope that depend on it, directly or through
    /// others (SPEC §10); filled by [`Plan::with_blocks`].
    pub blocks: Vec<String>,
}

/// The guardrail verdict (SPEC §4): the count of planned recoveries
/// (correct-status and toggle-suspend; repairs never count) against
/// `--max-actions`. Tripped means none of those recoveries runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guardrail {
    pub candidates: usize,
    pub max_actions: usize,
    pub tripped: bool,
}

impl Guardrail {
    /// Tripped when the candidates exceed the limit (at the limit is fine).
    pub fn new(candidates: usize, max_actions: usize) -> Guardrail {
        Guardrail {
            candidates,
            max_actions,
            tripped: candidates > max_actions,
        }
    }
}

/// Every decision of one run, sorted by namespace then name. Items decided
/// `ready` are not kept (they are only counted in `scanned`).
#[derive(Debug, Clone)]
pub struct Plan {
    /// HelmReleases read, healthy ones included.
    pub scanned: usize,
    pub items: Vec<PlannedItem>,
    pub guardrail: Guardrail,
}

/// Decides every candidate and computes the guardrail. `scanned` counts
/// every HelmRelease read, including `ready` ones the lister already dropped;
/// `storage` holds the facts read for [`storage_needed`] (a missing entry is
/// `storage-unreadable`).
pub fn plan(
    scanned: usize,
    candidates: Vec<Candidate>,
    storage: &HashMap<ReleaseRef, StorageFact>,
    now: DateTime<Utc>,
    config: &Config,
) -> Plan {
    let mut items: Vec<PlannedItem> = candidates
        .into_iter()
        .filter_map(|candidate| match candidate {
            Candidate::View(view) => {
                let fact = storage_needed(&view, now, config).and_then(|r| storage.get(&r));
                let decision = decide(&view, fact, now, config);
                (decision.reason != Reason::Ready).then(|| PlannedItem {
                    namespace: view.namespace.clone(),
                    name: view.name.clone(),
                    decision,
                    view: Some(view),
                    problem: None,
                    blocks: Vec::new(),
                })
            }
            Candidate::Malformed(m) => Some(PlannedItem {
                namespace: m.namespace.clone().unwrap_or_else(|| UNKNOWN.to_string()),
                name: m.name.clone().unwrap_or_else(|| UNKNOWN.to_string()),
                decision: Decision::skip(Reason::Malformed),
                view: None,
                problem: Some(m.problem),
                blocks: Vec::new(),
            }),
        })
        .collect();
    items.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let candidates = items
        .iter()
        .filter(|i| i.decision.branch.is_some_and(|b| b.is_guarded()))
        .count();
    Plan {
        scanned,
        items,
        guardrail: Guardrail::new(candidates, config.max_actions),
    }
}

/// Whether the lister keeps a listed view for planning: everything but
/// `ready`, which never depends on Helm storage, so it is decided here
/// without it and dropped (memory grows with the unhealthy HelmReleases,
/// not with the cluster). Handed to [`crate::kube_io::list_helmreleases`].
pub fn worth_keeping(now: DateTime<Utc>, config: &Config) -> impl Fn(&HelmReleaseView) -> bool {
    move |view| decide(view, None, now, config).reason != Reason::Ready
}

/// The releases whose Helm storage the candidates need, each once.
pub fn releases_needed(
    candidates: &[Candidate],
    now: DateTime<Utc>,
    config: &Config,
) -> BTreeSet<ReleaseRef> {
    candidates
        .iter()
        .filter_map(|candidate| match candidate {
            Candidate::View(view) => storage_needed(view, now, config),
            Candidate::Malformed(_) => None,
        })
        .collect()
}

impl Plan {
    /// Fills `blocks` of every action and listed skip from the `dependsOn`
    /// entries of the same list.
    pub fn with_blocks(mut self, dependents: &Dependents) -> Plan {
        for item in &mut self.items {
            if item.decision.reason != Reason::Ready {
                item.blocks = dependents.blocks(&item.namespace, &item.name);
            }
        }
        self
    }

    /// A plan with nothing in it (e.g. when listing failed).
    pub fn empty(scanned: usize, config: &Config) -> Plan {
        Plan {
            scanned,
            items: Vec::new(),
            guardrail: Guardrail::new(0, config.max_actions),
        }
    }

    /// Every planned action, repairs included, whether or not the guardrail
    /// lets it run.
    pub fn actions(&self) -> impl Iterator<Item = &PlannedItem> {
        self.items.iter().filter(|i| i.decision.branch.is_some())
    }

    /// The actions the executor may run: repairs always, the two recovery
    /// branches only when the guardrail did not trip.
    pub fn runnable(&self) -> impl Iterator<Item = &PlannedItem> {
        let tripped = self.guardrail.tripped;
        self.actions()
            .filter(move |i| !(tripped && i.decision.branch.is_some_and(|b| b.is_guarded())))
    }

    /// The recoveries held back by a tripped guardrail (empty otherwise).
    pub fn held_back(&self) -> impl Iterator<Item = &PlannedItem> {
        let tripped = self.guardrail.tripped;
        self.actions()
            .filter(move |i| tripped && i.decision.branch.is_some_and(|b| b.is_guarded()))
    }

    /// The listed skips: every skip except `ready`.
    pub fn skips(&self) -> impl Iterator<Item = &PlannedItem> {
        self.items
            .iter()
            .filter(|i| i.decision.branch.is_none() && i.decision.reason != Reason::Ready)
    }

    /// HelmReleases decided at the `already-corrected` row or below.
    pub fn stuck(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.decision.reason.is_stuck())
            .count()
    }

    /// Guardrail candidates at plan time.
    pub fn planned(&self) -> usize {
        self.guardrail.candidates
    }

    /// Some HelmRelease could not be decided (`storage-unreadable`): the run
    /// exits 3.
    pub fn has_undecided(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.decision.reason == Reason::StorageUnreadable)
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
