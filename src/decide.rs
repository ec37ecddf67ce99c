//! One decision per HelmRelease: the SPEC §3 table, first matching row wins.
//!
//! Pure: the clock is the `now` parameter, Helm storage arrives as a
//! [`StorageFact`] read beforehand. [`storage_needed`] tells the reader which
//! HelmReleases reach a row that needs Helm storage, so storage is never read
//! for healthy, suspended or deleting ones.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Config, format_duration};
use crate::failure::Failure;
use crate::model::{Branch, Reason, annotations};
use crate::view::{ConditionView, HelmReleaseView, SnapshotView};

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
    /// The Secrets could not be listed (error, timeout, forbidden): why.
    Unreadable(Failure),
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
    let facts = Facts::new(view, Storage::NotRead, now, config);
    match walk(&facts, |_, _| {}) {
        Walked::Decided(_) => None,
        Walked::NeedsStorage => Some(ReleaseRef::of(view)),
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
    let facts = Facts::new(view, Storage::given(storage), now, config);
    match walk(&facts, |_, _| {}) {
        Walked::Decided(decision) => decision,
        // Storage was given (or counts as unreadable): never reached.
        Walked::NeedsStorage => Decision::skip(Reason::StorageUnreadable),
    }
}

/// What a missing storage fact stands for.
static NOT_READ: Failure = Failure::NotRead;

/// Helm storage as far as the table knows it.
#[derive(Debug, Clone, Copy)]
pub enum Storage<'a> {
    /// Not read yet: a row that needs it stops the walk.
    NotRead,
    /// Read: the latest revision, `None` when there is no release Secret.
    Latest(Option<&'a LatestRevision>),
    /// Could not be read: why.
    Unreadable(&'a Failure),
}

impl<'a> Storage<'a> {
    /// What `decide` was given: a missing fact counts as unreadable.
    pub fn given(fact: Option<&'a StorageFact>) -> Storage<'a> {
        match fact {
            Some(StorageFact::Latest(latest)) => Storage::Latest(latest.as_ref()),
            Some(StorageFact::Unreadable(why)) => Storage::Unreadable(why),
            None => Storage::Unreadable(&NOT_READ),
        }
    }
}

/// Which stuck mode the history shows.
#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    /// history[0] is `deployed`.
    Deployed(&'a SnapshotView),
    /// History is empty or history[0] is `pending-install`.
    PendingInstall,
    /// history[0] has any other status.
    Other,
}

/// Everything the rows read about one HelmRelease, derived once.
pub struct Facts<'a> {
    view: &'a HelmReleaseView,
    storage: Storage<'a>,
    now: DateTime<Utc>,
    config: &'a Config,
    marker: bool,
    ready: Option<&'a ConditionView>,
    /// Ready's `lastTransitionTime`, parsed.
    ready_since: Option<DateTime<Utc>>,
    /// A `Reconciling` condition saying `True`, and its parsed time.
    reconciling: Option<(&'a ConditionView, Option<DateTime<Utc>>)>,
    mode: Mode<'a>,
}

impl<'a> Facts<'a> {
    pub fn new(
        view: &'a HelmReleaseView,
        storage: Storage<'a>,
        now: DateTime<Utc>,
        config: &'a Config,
    ) -> Facts<'a> {
        let ready = view.condition(READY);
        let reconciling = view
            .condition(RECONCILING)
            .filter(|c| c.status == "True")
            .map(|c| (c, c.last_transition_time.as_deref().and_then(parse_time)));
        Facts {
            view,
            storage,
            now,
            config,
            marker: view.annotation(annotations::SUSPENDED_AT).is_some(),
            ready,
            ready_since: ready
                .and_then(|r| r.last_transition_time.as_deref())
                .and_then(parse_time),
            reconciling,
            mode: history_mode(view),
        }
    }

    /// Ready is `Unknown`.
    fn ready_unknown(&self) -> bool {
        self.ready.is_some_and(|r| r.status == "Unknown")
    }

    /// The later of Ready's and a true Reconciling's transition; `None` when
    /// one of them is missing or unparseable.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        let ready = self.ready_since?;
        match self.reconciling {
            None => Some(ready),
            Some((_, reconciling)) => Some(ready.max(reconciling?)),
        }
    }

    /// SPEC §3's age: now minus [`Facts::since`].
    pub fn age(&self) -> Option<TimeDelta> {
        Some(self.now.signed_duration_since(self.since()?))
    }

    /// Ready Unknown for at least the threshold: the rows from
    /// `already-corrected` on apply.
    fn stuck(&self) -> bool {
        self.ready_unknown()
            && self
                .age()
                .is_some_and(|age| age >= delta(self.config.stuck_threshold))
    }

    fn deployed_head(&self) -> Option<&'a SnapshotView> {
        match self.mode {
            Mode::Deployed(head) if self.stuck() => Some(head),
            _ => None,
        }
    }

    fn pending_install(&self) -> bool {
        matches!(self.mode, Mode::PendingInstall) && self.stuck()
    }

    fn annotation_time(&self, key: &str) -> Option<DateTime<Utc>> {
        self.view.annotation(key).and_then(parse_time)
    }
}

/// One row's test on one HelmRelease: whether it matched, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub matched: bool,
    pub why: String,
}

/// A row's test, or "this row needs Helm storage, which was not read".
enum Test {
    Checked(Check),
    NeedsStorage,
}

fn matched(why: String) -> Test {
    Test::Checked(Check { matched: true, why })
}

fn failed(why: String) -> Test {
    Test::Checked(Check {
        matched: false,
        why,
    })
}

fn check(matched: bool, why: String) -> Test {
    Test::Checked(Check { matched, why })
}

/// One row of the SPEC §3 table: its reason code, what it tests, the
/// outcome. [`decide`] and `explain` both walk [`TABLE`], so the rules exist
/// once.
pub struct Row {
    pub reason: Reason,
    /// The row's condition in words (SPEC §3's "when" column).
    pub when: &'static str,
    /// The action on a match; `None` for a skip.
    pub branch: Option<Branch>,
    test: fn(&Facts<'_>) -> Test,
}

impl Row {
    pub fn decision(&self) -> Decision {
        Decision {
            reason: self.reason,
            branch: self.branch,
        }
    }
}

/// How a walk of the table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// A row matched.
    Decided(Decision),
    /// A row needs Helm storage that was not read.
    NeedsStorage,
}

/// Walks [`TABLE`] in order until a row matches (or needs storage that was
/// not read), showing `visit` every row tried and its check.
pub fn walk(facts: &Facts<'_>, mut visit: impl FnMut(&Row, &Check)) -> Walked {
    for row in &TABLE {
        match (row.test)(facts) {
            Test::NeedsStorage => return Walked::NeedsStorage,
            Test::Checked(check) => {
                visit(row, &check);
                if check.matched {
                    return Walked::Decided(row.decision());
                }
            }
        }
    }
    // The last row matches anything; kept total anyway.
    Walked::Decided(Decision::skip(Reason::UnknownStuckMode))
}

/// The SPEC §3 decision table, in order; the first row that matches wins.
pub const TABLE: [Row; 20] = [
    Row {
        reason: Reason::Deleting,
        when: "metadata.deletionTimestamp set",
        branch: None,
        test: |f| {
            check(
                f.view.deleting,
                format!(
                    "metadata.deletionTimestamp is {}",
                    if f.view.deleting { "set" } else { "not set" }
                ),
            )
        },
    },
    Row {
        reason: Reason::InterruptedToggle,
        when: "our suspend marker present and spec.suspend true",
        branch: Some(Branch::Resume),
        test: |f| check(f.marker && f.view.suspend, marker_and_suspend(f)),
    },
    Row {
        reason: Reason::StaleMarker,
        when: "our suspend marker present, spec.suspend false or absent",
        branch: Some(Branch::ClearMarker),
        test: |f| check(f.marker && !f.view.suspend, marker_and_suspend(f)),
    },
    Row {
        reason: Reason::Suspended,
        when: "spec.suspend true without our marker (an operator suspended it)",
        branch: None,
        test: |f| {
            check(
                f.view.suspend,
                format!("spec.suspend is {}", f.view.suspend),
            )
        },
    },
    Row {
        reason: Reason::NoReadyCondition,
        when: "no Ready condition",
        branch: None,
        test: |f| match f.ready {
            None => matched("there is no Ready condition".to_string()),
            Some(r) => failed(format!("Ready is {}", r.status)),
        },
    },
    Row {
        reason: Reason::Ready,
        when: "Ready True",
        branch: None,
        test: |f| ready_is(f, "True"),
    },
    Row {
        reason: Reason::NotReady,
        when: "Ready False",
        branch: None,
        test: |f| ready_is(f, "False"),
    },
    Row {
        reason: Reason::BadTimestamp,
        when: "Ready Unknown and a timestamp its age needs missing or not RFC 3339",
        branch: None,
        test: |f| {
            if !f.ready_unknown() {
                return failed("Ready is not Unknown".to_string());
            }
            let ready_raw = f.ready.and_then(|r| r.last_transition_time.as_deref());
            if f.ready_since.is_none() {
                return matched(format!(
                    "Ready's lastTransitionTime is {}",
                    raw_time(ready_raw)
                ));
            }
            match f.reconciling {
                Some((c, None)) => matched(format!(
                    "Reconciling is True and its lastTransitionTime is {}",
                    raw_time(c.last_transition_time.as_deref())
                )),
                _ => failed("the timestamps its age needs are RFC 3339".to_string()),
            }
        },
    },
    Row {
        reason: Reason::WithinThreshold,
        when: "Ready Unknown for less than --stuck-threshold",
        branch: None,
        test: |f| match f.age().filter(|_| f.ready_unknown()) {
            None => failed("Ready is not Unknown with a usable age".to_string()),
            Some(age) => {
                let threshold = delta(f.config.stuck_threshold);
                check(
                    age < threshold,
                    format!(
                        "Ready Unknown for {} (since {}), threshold {} ({})",
                        format_age(age),
                        f.since().map(rfc3339).unwrap_or_default(),
                        format_duration(f.config.stuck_threshold),
                        if age < threshold {
                            "below it"
                        } else {
                            "at or past it: stuck"
                        }
                    ),
                )
            }
        },
    },
    Row {
        reason: Reason::AlreadyCorrected,
        when: "history[0] deployed, our auto-corrected-at annotation younger than --cooldown",
        branch: None,
        test: |f| {
            let Some(_) = f.deployed_head() else {
                return failed(history_not(f, DEPLOYED));
            };
            let Some(corrected) = f.annotation_time(annotations::AUTO_CORRECTED_AT) else {
                return failed("no (RFC 3339) auto-corrected-at annotation".to_string());
            };
            check(
                younger_than(corrected, f.now, f.config.cooldown),
                format!(
                    "corrected at {} ({} ago, cooldown {})",
                    rfc3339(corrected),
                    format_age(f.now.signed_duration_since(corrected)),
                    format_duration(f.config.cooldown),
                ),
            )
        },
    },
    Row {
        reason: Reason::GenerationNotAttempted,
        when: "history[0] deployed, status.lastAttemptedGeneration differs from metadata.generation",
        branch: None,
        test: |f| {
            if f.deployed_head().is_none() {
                return failed(history_not(f, DEPLOYED));
            }
            let (attempted, generation) = (f.view.last_attempted_generation, f.view.generation);
            check(
                attempted.is_none() || attempted != generation,
                format!(
                    "status.lastAttemptedGeneration is {}, metadata.generation is {}",
                    number(attempted),
                    number(generation)
                ),
            )
        },
    },
    Row {
        reason: Reason::Remediated,
        when: "history[0] deployed, a Remediated condition present",
        branch: None,
        test: |f| {
            if f.deployed_head().is_none() {
                return failed(history_not(f, DEPLOYED));
            }
            match f.view.condition(REMEDIATED) {
                Some(c) => matched(format!("a Remediated condition is present ({})", c.status)),
                None => failed("no Remediated condition".to_string()),
            }
        },
    },
    Row {
        reason: Reason::HelmStorageDisagrees,
        when: "history[0] deployed, the latest Helm revision missing, not deployed, or another version",
        branch: None,
        test: |f| {
            let Some(head) = f.deployed_head() else {
                return failed(history_not(f, DEPLOYED));
            };
            match f.storage {
                Storage::NotRead => Test::NeedsStorage,
                Storage::Unreadable(_) => failed("Helm storage could not be read".to_string()),
                Storage::Latest(latest) => check(
                    !storage_agrees(head, latest),
                    format!(
                        "history[0] is version {}, Helm's latest revision is {}",
                        number(head.version),
                        revision(latest)
                    ),
                ),
            }
        },
    },
    Row {
        reason: Reason::DeployedButUnknownReady,
        when: "history[0] deployed (and Helm storage agrees)",
        branch: Some(Branch::CorrectStatus),
        test: |f| {
            let Some(head) = f.deployed_head() else {
                return failed(history_not(f, DEPLOYED));
            };
            match f.storage {
                Storage::NotRead => Test::NeedsStorage,
                Storage::Unreadable(_) => failed("Helm storage could not be read".to_string()),
                Storage::Latest(latest) => check(
                    storage_agrees(head, latest),
                    format!(
                        "history[0] deployed at version {}, Helm's latest revision is {}",
                        number(head.version),
                        revision(latest)
                    ),
                ),
            }
        },
    },
    Row {
        reason: Reason::RecentlyToggled,
        when: "history empty or pending-install, our toggled-at annotation younger than --cooldown",
        branch: None,
        test: |f| {
            if !f.pending_install() {
                return failed(history_not(f, PENDING_INSTALL));
            }
            match f.annotation_time(annotations::TOGGLED_AT) {
                None => failed("no (RFC 3339) toggled-at annotation".to_string()),
                Some(toggled) => check(
                    younger_than(toggled, f.now, f.config.cooldown),
                    format!(
                        "toggled at {} ({} ago, cooldown {})",
                        rfc3339(toggled),
                        format_age(f.now.signed_duration_since(toggled)),
                        format_duration(f.config.cooldown)
                    ),
                ),
            }
        },
    },
    Row {
        reason: Reason::PendingInstallButDeployed,
        when: "history empty or pending-install, the latest Helm revision deployed",
        branch: Some(Branch::ToggleSuspend),
        test: |f| pending_storage(f, |l| l.is_some_and(|l| l.status == DEPLOYED)),
    },
    Row {
        reason: Reason::NoHelmRelease,
        when: "history empty or pending-install, no release Secret",
        branch: None,
        test: |f| pending_storage(f, |l| l.is_none()),
    },
    Row {
        reason: Reason::HelmReleasePending,
        when: "history empty or pending-install, the latest Helm revision pending-*",
        branch: None,
        test: |f| {
            pending_storage(f, |l| {
                l.is_some_and(|l| l.status.starts_with(PENDING_PREFIX))
            })
        },
    },
    Row {
        reason: Reason::StorageUnreadable,
        when: "Helm storage was needed but could not be read",
        branch: None,
        test: |f| {
            let needed = f.deployed_head().is_some() || f.pending_install();
            match f.storage {
                Storage::Unreadable(why) if needed => {
                    matched(format!("Helm storage could not be read: {why}"))
                }
                _ if !needed => failed("Helm storage was not needed".to_string()),
                _ => failed("Helm storage was read".to_string()),
            }
        },
    },
    Row {
        reason: Reason::UnknownStuckMode,
        when: "anything else stuck past the threshold",
        branch: None,
        test: |f| {
            let head = match f.view.history.first() {
                None => "history is empty".to_string(),
                Some(h) => format!(
                    "history[0] is {}",
                    h.status.as_deref().unwrap_or("without status")
                ),
            };
            matched(format!("no row above matched ({head})"))
        },
    },
];

fn marker_and_suspend(f: &Facts<'_>) -> String {
    let marker = match f.view.annotation(annotations::SUSPENDED_AT) {
        Some(at) => format!("our suspended-at marker is present ({at})"),
        None => "our suspended-at marker is absent".to_string(),
    };
    format!("{marker}, spec.suspend is {}", f.view.suspend)
}

fn ready_is(f: &Facts<'_>, status: &str) -> Test {
    match f.ready {
        Some(r) => check(r.status == status, format!("Ready is {}", r.status)),
        None => failed("there is no Ready condition".to_string()),
    }
}

/// Why a row of one stuck mode does not apply.
fn history_not(f: &Facts<'_>, wanted: &str) -> String {
    if !f.stuck() {
        return "not stuck past the threshold".to_string();
    }
    let head = match f.view.history.first() {
        None => "history is empty".to_string(),
        Some(h) => format!(
            "history[0] is {}",
            h.status.as_deref().unwrap_or("without status")
        ),
    };
    match wanted {
        DEPLOYED => format!("{head}, not deployed"),
        _ => format!("{head}, neither empty nor pending-install"),
    }
}

/// The rows of the pending-install mode that read Helm storage.
fn pending_storage(f: &Facts<'_>, test: fn(Option<&LatestRevision>) -> bool) -> Test {
    if !f.pending_install() {
        return failed(history_not(f, PENDING_INSTALL));
    }
    match f.storage {
        Storage::NotRead => Test::NeedsStorage,
        Storage::Unreadable(_) => failed("Helm storage could not be read".to_string()),
        Storage::Latest(latest) => check(
            test(latest),
            format!("Helm's latest revision is {}", revision(latest)),
        ),
    }
}

/// Which stuck mode the history shows.
fn history_mode(view: &HelmReleaseView) -> Mode<'_> {
    match view.history.first() {
        None => Mode::PendingInstall,
        Some(head) => match head.status.as_deref() {
            Some(DEPLOYED) => Mode::Deployed(head),
            Some(PENDING_INSTALL) => Mode::PendingInstall,
            _ => Mode::Other,
        },
    }
}

/// Helm's latest revision is `deployed` at history[0]'s version.
fn storage_agrees(head: &SnapshotView, latest: Option<&LatestRevision>) -> bool {
    latest.is_some_and(|l| {
        l.status == DEPLOYED
            && head
                .version
                .is_some_and(|v| u64::try_from(v) == Ok(l.version))
    })
}

fn revision(latest: Option<&LatestRevision>) -> String {
    match latest {
        None => "missing (no release Secret)".to_string(),
        Some(l) if l.status.is_empty() => format!("version {} without status label", l.version),
        Some(l) => format!("version {} {}", l.version, l.status),
    }
}

fn number(n: Option<i64>) -> String {
    n.map_or_else(|| "absent".to_string(), |n| n.to_string())
}

fn raw_time(raw: Option<&str>) -> String {
    match raw {
        None => "missing".to_string(),
        Some(raw) => format!("{raw:?}, not RFC 3339"),
    }
}

/// An age in the flags' duration syntax, largest units first (`6m`,
/// `7804h29m15s`); a negative age (a timestamp in the future) keeps its
/// sign.
pub fn format_age(age: TimeDelta) -> String {
    let secs = age.num_seconds();
    let total = secs.unsigned_abs();
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
    }
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if total == 0 {
        out.push_str("0s");
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
    fn ages_read_like_flag_durations() {
        for (secs, text) in [(0, "0s"), (360, "6m"), (3_661, "1h1m1s"), (-90, "-1m30s")] {
            assert_eq!(format_age(TimeDelta::seconds(secs)), text);
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
