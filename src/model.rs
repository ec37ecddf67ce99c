//! The closed vocabulary shared by deciding, acting and reporting.
//!
//! Every string that reaches a log line, an Event, the JSON report or a test
//! comes from the `Display` (or `as_str`) of one of these enums, so wording
//! cannot drift between them.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a HelmRelease got the outcome it got: one variant per row of the
/// decision table in SPEC §3, in table order, plus `Malformed` for an object
/// that could not be read into a view at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `metadata.deletionTimestamp` is set: the object is going away.
    Deleting,
    /// Our suspend marker is present and `spec.suspend` is true: a killed run
    /// left a toggle half-done; resume it.
    InterruptedToggle,
    /// Our suspend marker is present but `spec.suspend` is false or absent:
    /// clear the marker.
    StaleMarker,
    /// `spec.suspend` is true without our marker: an operator suspended it.
    Suspended,
    /// The object has no `Ready` condition.
    NoReadyCondition,
    /// `Ready` is `True`.
    Ready,
    /// `Ready` is `False`: helm-controller's remediation owns failures.
    NotReady,
    /// `Ready` is `Unknown` but a timestamp needed for its age is missing or
    /// unparseable.
    BadTimestamp,
    /// `Ready` is `Unknown` for less than the stuck threshold.
    WithinThreshold,
    /// Branch B already corrected it after `Ready` last changed, or within the
    /// cooldown.
    AlreadyCorrected,
    /// `status.lastAttemptedGeneration` differs from `metadata.generation`.
    GenerationNotAttempted,
    /// A `Remediated` condition is present.
    Remediated,
    /// History says deployed, Helm storage is missing, not deployed, or at
    /// another version.
    HelmStorageDisagrees,
    /// History says deployed but Ready stayed Unknown: write the status the
    /// controller would have written (branch B).
    DeployedButUnknownReady,
    /// A suspend toggle happened within the cooldown and did not help.
    RecentlyToggled,
    /// History is empty or pending-install while Helm storage says deployed:
    /// toggle `spec.suspend` (branch A).
    PendingInstallButDeployed,
    /// History is empty or pending-install and there is no release Secret.
    NoHelmRelease,
    /// History is empty or pending-install and Helm's latest revision is
    /// `pending-*`.
    HelmReleasePending,
    /// Helm storage was needed but could not be read.
    StorageUnreadable,
    /// Stuck past the threshold in a way no row above covers.
    UnknownStuckMode,
    /// The object could not be read into a view (wrong types, missing
    /// metadata): skipped and listed so a human looks.
    Malformed,
}

impl Reason {
    /// Every reason, in decision-table order.
    pub const ALL: [Reason; 21] = [
        Reason::Deleting,
        Reason::InterruptedToggle,
        Reason::StaleMarker,
        Reason::Suspended,
        Reason::NoReadyCondition,
        Reason::Ready,
        Reason::NotReady,
        Reason::BadTimestamp,
        Reason::WithinThreshold,
        Reason::AlreadyCorrected,
        Reason::GenerationNotAttempted,
        Reason::Remediated,
        Reason::HelmStorageDisagrees,
        Reason::DeployedButUnknownReady,
        Reason::RecentlyToggled,
        Reason::PendingInstallButDeployed,
        Reason::NoHelmRelease,
        Reason::HelmReleasePending,
        Reason::StorageUnreadable,
        Reason::UnknownStuckMode,
        Reason::Malformed,
    ];

    /// The stable reason code used in logs, Events and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Deleting => "deleting",
            Reason::InterruptedToggle => "interrupted-toggle",
            Reason::StaleMarker => "stale-marker",
            Reason::Suspended => "suspended",
            Reason::NoReadyCondition => "no-ready-condition",
            Reason::Ready => "ready",
            Reason::NotReady => "not-ready",
            Reason::BadTimestamp => "bad-timestamp",
            Reason::WithinThreshold => "within-threshold",
            Reason::AlreadyCorrected => "already-corrected",
            Reason::GenerationNotAttempted => "generation-not-attempted",
            Reason::Remediated => "remediated",
            Reason::HelmStorageDisagrees => "helm-storage-disagrees",
            Reason::DeployedButUnknownReady => "deployed-but-unknown-ready",
            Reason::RecentlyToggled => "recently-toggled",
            Reason::PendingInstallButDeployed => "pending-install-but-deployed",
            Reason::NoHelmRelease => "no-helm-release",
            Reason::HelmReleasePending => "helm-release-pending",
            Reason::StorageUnreadable => "storage-unreadable",
            Reason::UnknownStuckMode => "unknown-stuck-mode",
            Reason::Malformed => "malformed",
        }
    }

    /// True for the rows at `already-corrected` or below: Ready Unknown past
    /// the threshold and not deleting, suspended or carrying our marker. These
    /// are counted as `stuck` in the report.
    pub fn is_stuck(self) -> bool {
        self >= Reason::AlreadyCorrected && self != Reason::Malformed
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A write this tool can make to one HelmRelease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Branch {
    /// Branch B: annotate, then patch the status subresource to Ready/Released
    /// True; roll the annotation back if the status patch fails.
    CorrectStatus,
    /// Branch A: suspend with our marker, wait, resume and request a reconcile.
    ToggleSuspend,
    /// Repair: finish a toggle a killed run left suspended.
    Resume,
    /// Repair: remove our marker from an object that is not suspended.
    ClearMarker,
}

impl Branch {
    /// Every branch.
    pub const ALL: [Branch; 4] = [
        Branch::CorrectStatus,
        Branch::ToggleSuspend,
        Branch::Resume,
        Branch::ClearMarker,
    ];

    /// The branch name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Branch::CorrectStatus => "correct-status",
            Branch::ToggleSuspend => "toggle-suspend",
            Branch::Resume => "resume",
            Branch::ClearMarker => "clear-marker",
        }
    }

    /// Guardrail candidates are the two recovery branches; repairs of this
    /// tool's own state always run.
    pub fn is_guarded(self) -> bool {
        matches!(self, Branch::CorrectStatus | Branch::ToggleSuspend)
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionResult {
    /// Not executed: client dry run, guardrail tripped, or the run was
    /// interrupted or ran out of time before it started.
    Planned,
    /// Every write succeeded (for a server dry run: the server accepted it).
    Succeeded,
    /// A write failed and the object may need a human (or the next run).
    Failed,
    /// Branch B's status patch failed and the annotation was put back.
    RolledBack,
}

impl ActionResult {
    /// Every result.
    pub const ALL: [ActionResult; 4] = [
        ActionResult::Planned,
        ActionResult::Succeeded,
        ActionResult::Failed,
        ActionResult::RolledBack,
    ];

    /// The result name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Planned => "planned",
            ActionResult::Succeeded => "succeeded",
            ActionResult::Failed => "failed",
            ActionResult::RolledBack => "rolled-back",
        }
    }
}

impl fmt::Display for ActionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--dry-run` mode (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    /// Act for real.
    #[default]
    None,
    /// Read and decide only; no write, no Event.
    Client,
    /// Send every write with `dryRun=All`; skip the wait; no Event.
    Server,
}

impl DryRun {
    /// Every mode.
    pub const ALL: [DryRun; 3] = [DryRun::None, DryRun::Client, DryRun::Server];

    /// The mode name used in flags and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            DryRun::None => "none",
            DryRun::Client => "client",
            DryRun::Server => "server",
        }
    }
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every vocabulary enum serializes as its stable code, the same text as its
/// `Display`, and reads back from it (so tests assert typed reports).
macro_rules! serde_as_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = String::deserialize(deserializer)?;
                <$t>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == code)
                    .ok_or_else(|| D::Error::custom(format!("unknown code {code:?}")))
            }
        }
    )*};
}

serde_as_str!(Reason, Branch, ActionResult, DryRun);

/// Annotation keys and values this tool owns or sets.
pub mod annotations {
    /// Branch B audit and idempotency: when we last corrected the status.
    pub const AUTO_CORRECTED_AT: &str = "stuck-hr-recovery.openova.io/auto-corrected-at";
    /// Branch A marker: "this suspension is ours".
    pub const SUSPENDED_AT: &str = "stuck-hr-recovery.openova.io/suspended-at";
    /// Branch A audit and cooldown: when we last toggled.
    pub const TOGGLED_AT: &str = "stuck-hr-recovery.openova.io/toggled-at";
    /// Flux's on-demand reconcile request.
    pub const RECONCILE_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
}

/// The field manager on every write.
pub const FIELD_MANAGER: &str = "stuck-hr-recovery";

/// The HelmRelease API this tool reads and writes.
pub mod api {
    pub const GROUP: &str = "helm.toolkit.fluxcd.io";
    pub const VERSION: &str = "v2";
    pub const KIND: &str = "HelmRelease";
    pub const PLURAL: &str = "helmreleases";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_unique_and_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let code = reason.as_str();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{code}"
            );
            assert_eq!(reason.to_string(), code);
        }
    }

    #[test]
    fn stuck_rows_start_at_already_corrected() {
        let stuck: Vec<_> = Reason::ALL.into_iter().filter(|r| r.is_stuck()).collect();
        assert_eq!(stuck.first(), Some(&Reason::AlreadyCorrected));
        assert_eq!(stuck.last(), Some(&Reason::UnknownStuckMode));
        assert!(!Reason::WithinThreshold.is_stuck());
        assert!(!Reason::Malformed.is_stuck());
    }

    #[test]
    fn only_recovery_branches_are_guarded() {
        assert!(Branch::CorrectStatus.is_guarded());
        assert!(Branch::ToggleSuspend.is_guarded());
        assert!(!Branch::Resume.is_guarded());
        assert!(!Branch::ClearMarker.is_guarded());
    }
}
