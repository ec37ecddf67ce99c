//! One decision per HelmRelease: the SPEC §3 table, first matching row wins.
//!
//! Pure: the clock is the `now` parameter, Helm storage arrives as a
//! [`StorageFact`] read beforehand. [`storage_needed`] tells the reader which
//! HelmReleases reach a row that needs Helm storage, so storage is never read
//! for healthy, suspended or deleting ones.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Config;
use crate::model::{Branch, Reason, annotations};
use crate::view::{HelmReleaseView, SnapshotView};

/// Condition types and Helm statuses the table reads.
const READY: &str = "Ready";
const RECONCILING: &str = "Reconciling";
const REMEDIATED: &str = "Remediated";
const DEPLOYED: &str = "deployed";
const PENDING_INSTALL: &str = "pending-install";
const PENDING_PREFIX: &str = "pending-";

/// Where one Helm release's Secrets live: list Secrets in `storage_namespace`
/// with labels `owner=helm,name=<release_name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseRef {
    pub storage_namespace: String,
    pub release_name: String,
}

impl ReleaseRef {
    /// The release of one HelmRelease.
    pub fn of(view: &HelmReleaseView) -> ReleaseRef {
        ReleaseRef {
            storage_namespace: view.storage_namespace().to_string(),
            release_name: view.release_name(),
        }
    }

    /// The label selector that lists this release's Secrets.
    pub fn label_selector(&self) -> String {
        format!("owner=helm,name={}", self.release_name)
    }
}

/// Helm's latest revision of one release, from Secret labels only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRevision {
    pub version: u64,
    /// Helm's `status` label (`deployed`, `pending-install`, …); empty when
    /// the label is missing.
    pub status: String,
}

/// What reading one release's Helm storage found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageFact {
    /// The latest revision; `None` means there is no release Secret.
    Latest(Option<LatestRevision>),
    /// The Secrets could not be listed (error, timeout, forbidden): the
    /// message says why.
    Unreadable(String),
}

/// The revision with the highest numeric `version` label (10 > 9). A
/// `version` that is not a whole number is ignored; `None` when no Secret has
/// a usable version.
pub fn latest_revision<'a>(
    secret_labels: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> Option<LatestRevision> {
    secret_labels
        .into_iter()
        .filter_map(|labels| {
            let version = labels.get("version")?;
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let version: u64 = version.parse().ok()?;
            Some((version, labels))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(version, labels)| LatestRevision {
            version,
            status: labels.get("status").cloned().unwrap_or_default(),
        })
}

/// The outcome for one HelmRelease: its reason code, and the write to make
/// (`None` for a skip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    pub branch: Option<Branch>,
}

impl Decision {
    /// A skip.
    pub fn skip(reason: Reason) -> Decision {
        Decision {
            reason,
            branch: None,
        }
    }

    /// An action.
    pub fn act(reason: Reason, branch: Branch) -> Decision {
        Decision {
            reason,
            branch: Some(branch),
        }
    }
}

/// The release whose Helm storage this view needs, when (and only when) the
/// view reaches a row of the table that reads Helm storage.
pub fn storage_needed(
    view: &HelmReleaseView,
    now: DateTime<Utc>,
    config: &Config,
) -> Option<ReleaseRef> {
    match walk(view, now, config) {
        Step::Done(_) => None,
        Step::NeedsStorage(_) => Some(ReleaseRef::of(view)),
    }
}

/// Decides one HelmRelease (SPEC §3). `storage` is the fact read for
/// [`storage_needed`]'s release; `None` where storage is needed yields
/// `storage-unreadable`.
pub fn decide(
    view: &HelmReleaseView,
    storage: Option<&StorageFact>,
    now: DateTime<Utc>,
    config: &Config,
) -> Decision {
    match walk(view, now, config) {
        Step::Done(decision) => decision,
        Step::NeedsStorage(mode) => {
            let latest = match storage {
                Some(StorageFact::Latest(latest)) => latest.as_ref(),
                Some(StorageFact::Unreadable(_)) | None => {
                    return Decision::skip(Reason::StorageUnreadable);
                }
            };
            match mode {
                Mode::Deployed(snapshot) => deployed_rows(snapshot, latest),
                Mode::PendingInstall => pending_install_rows(latest),
            }
        }
    }
}

/// Where walking the table without Helm storage ends.
enum Step<'a> {
    Done(Decision),
    NeedsStorage(Mode<'a>),
}

/// Which storage rows apply.
enum Mode<'a> {
    /// history[0] is `deployed`.
    Deployed(&'a SnapshotView),
    /// History is empty or history[0] is `pending-install`.
    PendingInstall,
}

/// The rows that do not need Helm storage, in table order.
fn walk<'a>(view: &'a HelmReleaseView, now: DateTime<Utc>, config: &Config) -> Step<'a> {
    use Step::Done;
    if view.deleting {
        return Done(Decision::skip(Reason::Deleting));
    }
    let marker = view.annotation(annotations::SUSPENDED_AT).is_some();
    match (marker, view.suspend) {
        (true, true) => return Done(Decision::act(Reason::InterruptedToggle, Branch::Resume)),
        (true, false) => return Done(Decision::act(Reason::StaleMarker, Branch::ClearMarker)),
        (false, true) => return Done(Decision::skip(Reason::Suspended)),
        (false, false) => {}
    }
    let Some(ready) = view.condition(READY) else {
        return Done(Decision::skip(Reason::NoReadyCondition));
    };
    match ready.status.as_str() {
        "True" => return Done(Decision::skip(Reason::Ready)),
        "False" => return Done(Decision::skip(Reason::NotReady)),
        "Unknown" => {}
        // The view admits nothing else; never act on what it might mean.
        _ => return Done(Decision::skip(Reason::UnknownStuckMode)),
    }
    let Some(ready_since) = ready.last_transition_time.as_deref().and_then(parse_time) else {
        return Done(Decision::skip(Reason::BadTimestamp));
    };
    let mut since = ready_since;
    if let Some(reconciling) = view.condition(RECONCILING).filter(|c| c.status == "True") {
        match reconciling
            .last_transition_time
            .as_deref()
            .and_then(parse_time)
        {
            Some(t) => since = since.max(t),
            None => return Done(Decision::skip(Reason::BadTimestamp)),
        }
    }
    if now.signed_duration_since(since) < delta(config.stuck_threshold) {
        return Done(Decision::skip(Reason::WithinThreshold));
    }

    match history_mode(view) {
        Some(Mode::Deployed(head)) => {
            // SPEC §3: our correction at or after Ready's last transition
            // means this Unknown episode was already corrected once — never
            // twice, so the tool cannot fight helm-controller. Either clause
            // holds it back. This also holds a half-done correction
            // (annotation written, status not: SIGKILL between the two
            // writes, or a failed status patch whose rollback failed too)
            // until Ready transitions again; it stays listed as a skip for
            // a human (docs/safety.md).
            if let Some(corrected) = annotation_time(view, annotations::AUTO_CORRECTED_AT)
                && (corrected >= ready_since || younger_than(corrected, now, config.cooldown))
            {
                return Done(Decision::skip(Reason::AlreadyCorrected));
            }
            if view.last_attempted_generation.is_none()
                || view.last_attempted_generation != view.generation
            {
                return Done(Decision::skip(Reason::GenerationNotAttempted));
            }
            if view.condition(REMEDIATED).is_some() {
                return Done(Decision::skip(Reason::Remediated));
            }
            Step::NeedsStorage(Mode::Deployed(head))
        }
        Some(Mode::PendingInstall) => {
            if let Some(toggled) = annotation_time(view, annotations::TOGGLED_AT)
                && younger_than(toggled, now, config.cooldown)
            {
                return Done(Decision::skip(Reason::RecentlyToggled));
            }
            Step::NeedsStorage(Mode::PendingInstall)
        }
        None => Done(Decision::skip(Reason::UnknownStuckMode)),
    }
}

/// Which stuck mode the history shows: history[0] `deployed`, or history
/// empty or history[0] `pending-install`; `None` for anything else.
fn history_mode(view: &HelmReleaseView) -> Option<Mode<'_>> {
    match view.history.first() {
        None => Some(Mode::PendingInstall),
        Some(head) => match head.status.as_deref() {
            Some(DEPLOYED) => Some(Mode::Deployed(head)),
            Some(PENDING_INSTALL) => Some(Mode::PendingInstall),
            _ => None,
        },
    }
}

/// history[0] is `deployed` and every row above the storage rows passed.
fn deployed_rows(head: &SnapshotView, latest: Option<&LatestRevision>) -> Decision {
    let agrees = latest.is_some_and(|l| {
        l.status == DEPLOYED
            && head
                .version
                .is_some_and(|v| u64::try_from(v) == Ok(l.version))
    });
    if agrees {
        Decision::act(Reason::DeployedButUnknownReady, Branch::CorrectStatus)
    } else {
        Decision::skip(Reason::HelmStorageDisagrees)
    }
}

/// History is empty or pending-install, no recent toggle.
fn pending_install_rows(latest: Option<&LatestRevision>) -> Decision {
    match latest {
        None => Decision::skip(Reason::NoHelmRelease),
        Some(l) if l.status == DEPLOYED => {
            Decision::act(Reason::PendingInstallButDeployed, Branch::ToggleSuspend)
        }
        Some(l) if l.status.starts_with(PENDING_PREFIX) => {
            Decision::skip(Reason::HelmReleasePending)
        }
        Some(_) => Decision::skip(Reason::UnknownStuckMode),
    }
}

/// Strict RFC 3339 (`2024-05-01T10:00:00Z`, offsets and fractions allowed; no
/// space separator, no date alone).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() < 20 || !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An annotation read as a timestamp; unparseable counts as absent.
fn annotation_time(view: &HelmReleaseView, key: &str) -> Option<DateTime<Utc>> {
    view.annotation(key).and_then(parse_time)
}

/// `then` is less than `window` before `now` (a future `then` is younger).
fn younger_than(then: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> bool {
    now.signed_duration_since(then) < delta(window)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(version: &str, status: &str) -> BTreeMap<String, String> {
        [
            ("owner", "helm"),
            ("name", "web"),
            ("version", version),
            ("status", status),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn version_10_is_later_than_version_9() {
        let secrets = [secret("9", "superseded"), secret("10", "deployed")];
        assert_eq!(
            latest_revision(&secrets),
            Some(LatestRevision {
                version: 10,
                status: "deployed".to_string()
            })
        );
    }

    #[test]
    fn a_version_that_is_not_a_whole_number_is_ignored() {
        for bad in [
            "x11",
            "11.0",
            "-11",
            "+11",
            "",
            " 11",
            "99999999999999999999999",
        ] {
            let secrets = [secret("2", "deployed"), secret(bad, "pending-upgrade")];
            let latest = latest_revision(&secrets).map(|l| l.version);
            assert_eq!(latest, Some(2), "{bad:?}");
        }
    }

    #[test]
    fn no_secret_with_a_usable_version_means_no_release() {
        assert_eq!(latest_revision(&[]), None);
        assert_eq!(latest_revision(&[secret("v1", "deployed")]), None);
    }

    #[test]
    fn a_missing_status_label_reads_as_empty() {
        let mut labels = secret("3", "deployed");
        labels.remove("status");
        let latest = latest_revision([&labels]);
        assert_eq!(latest.map(|l| l.status), Some(String::new()));
    }

    #[test]
    fn strict_rfc3339_parsing() {
        assert!(parse_time("2026-01-01T11:00:00Z").is_some());
        assert!(parse_time("2026-01-01T11:00:00.5+01:00").is_some());
        assert!(parse_time("2026-01-01t11:00:00z").is_some());
        for bad in [
            "2026-01-01 11:00:00Z",
            "2026-01-01T11:00:00",
            "2026-01-01T11:00Z",
            "2026-01-01",
            "Thu, 01 Jan 2026 11:00:00 GMT",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_label_selector_names_owner_and_release() {
        let r = ReleaseRef {
            storage_namespace: "apps".to_string(),
            release_name: "web".to_string(),
        };
        assert_eq!(r.label_selector(), "owner=helm,name=web");
    }
}
