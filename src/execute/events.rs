//! Kubernetes Events about our actions, through kube's [`Recorder`]
//! (`events.k8s.io/v1`, create and — for a repeat — patch).
//!
//! No Event is published in a dry run (client or server). A failed publish is
//! logged at warn level and never changes an action's result. A publish
//! waits no longer than the run's deadline plus the clean-up grace, so a
//! hung Events API cannot hold the run past `--timeout`.

use std::fmt;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::time::Instant;

use super::Outcome;
use crate::error::{Error, ObjectName};
use crate::model::{ActionResult, Branch, Reason};
use crate::model::{DryRun, FIELD_MANAGER, api};
use crate::notify::{FluxEvent, Notifier};
use crate::plan::Plan;
use crate::view::HelmReleaseView;

/// Every Event this tool publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// Normal: branch B wrote Ready/Released True.
    StuckReleaseCorrected,
    /// Warning: branch B's status patch failed (rolled back, or failed).
    StuckReleaseCorrectionFailed,
    /// Normal: branch A suspended and resumed.
    StuckReleaseToggled,
    /// Warning: a suspend or resume failed.
    StuckReleaseToggleFailed,
    /// Normal: a toggle a killed run left suspended was resumed.
    InterruptedToggleResumed,
    /// Warning: too many recoveries planned; none was acted on.
    RecoveryGuardrailTripped,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::StuckReleaseCorrected => "StuckReleaseCorrected",
            EventReason::StuckReleaseCorrectionFailed => "StuckReleaseCorrectionFailed",
            EventReason::StuckReleaseToggled => "StuckReleaseToggled",
            EventReason::StuckReleaseToggleFailed => "StuckReleaseToggleFailed",
            EventReason::InterruptedToggleResumed => "InterruptedToggleResumed",
            EventReason::RecoveryGuardrailTripped => "RecoveryGuardrailTripped",
        }
    }

    /// Normal or Warning.
    pub fn event_type(self) -> EventType {
        match self {
            EventReason::StuckReleaseCorrected
            | EventReason::StuckReleaseToggled
            | EventReason::InterruptedToggleResumed => EventType::Normal,
            EventReason::StuckReleaseCorrectionFailed
            | EventReason::StuckReleaseToggleFailed
            | EventReason::RecoveryGuardrailTripped => EventType::Warning,
        }
    }

    /// The Event's `action` (what we were doing).
    fn action(self) -> &'static str {
        match self {
            EventReason::StuckReleaseCorrected | EventReason::StuckReleaseCorrectionFailed => {
                "CorrectStatus"
            }
            EventReason::StuckReleaseToggled | EventReason::StuckReleaseToggleFailed => {
                "ToggleSuspend"
            }
            EventReason::InterruptedToggleResumed => "Resume",
            EventReason::RecoveryGuardrailTripped => "Plan",
        }
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Event about one finished action, with its note — every note of an
/// action's Event is written here. `None`: no Event (not started, or
/// re-decided into a skip; a re-decided repair publishes its own).
pub fn about(
    branch: Branch,
    view: &HelmReleaseView,
    outcome: &Outcome,
) -> Option<(EventReason, String)> {
    let Outcome::Done { result, error } = outcome else {
        return None;
    };
    let ok = *result == ActionResult::Succeeded;
    let error = error.as_ref().map(ToString::to_string).unwrap_or_default();
    Some(match (branch, ok) {
        (Branch::CorrectStatus, true) => (
            EventReason::StuckReleaseCorrected,
            format!(
                "Ready was Unknown although Helm release {} is deployed: status set to Ready=True, Released=True",
                crate::patches::release_label(view)
            ),
        ),
        (Branch::CorrectStatus, false) => (
            EventReason::StuckReleaseCorrectionFailed,
            format!("correcting the status failed ({result}): {error}"),
        ),
        (Branch::ToggleSuspend, true) => (
            EventReason::StuckReleaseToggled,
            format!(
                "history says pending-install but Helm release {}/{} is deployed: suspended and resumed to make helm-controller look again",
                view.storage_namespace(),
                view.release_name()
            ),
        ),
        (Branch::ToggleSuspend, false) => (
            EventReason::StuckReleaseToggleFailed,
            format!("toggling spec.suspend failed ({result}): {error}"),
        ),
        (Branch::Resume, true) => (
            EventReason::InterruptedToggleResumed,
            "resumed a suspension a killed stuck-hr-recovery run left behind".to_owned(),
        ),
        (Branch::Resume, false) => (
            EventReason::StuckReleaseToggleFailed,
            format!("resuming the interrupted toggle failed ({result}): {error}"),
        ),
        (Branch::ClearMarker, _) => return None,
    })
}

/// The note of `RecoveryGuardrailTripped`.
pub fn guardrail_note(plan: &Plan, reason: Reason) -> String {
    format!(
        "{} HelmReleases planned for recovery, more than --max-actions={}: acting on none of them; \
         a cluster-wide outage would be masked by mass recovery ({reason})",
        plan.guardrail.candidates, plan.guardrail.max_actions
    )
}

/// Publishes Events about HelmReleases, or nothing in a dry run.
#[derive(Clone)]
pub struct Events {
    recorder: Option<Recorder>,
    /// No publish waits past this instant.
    until: Option<Instant>,
    /// Also posts each Event as a Flux event (`--events-addr`).
    notifier: Option<Notifier>,
}

impl Events {
    pub fn new(client: kube::Client, dry_run: DryRun) -> Self {
        let recorder = (dry_run == DryRun::None).then(|| {
            let reporter = Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            };
            Recorder::new(client, reporter)
        });
        Self {
            recorder,
            until: None,
            notifier: None,
        }
    }

    /// Also posts every Event to notification-controller (SPEC §10).
    pub fn notify(mut self, notifier: Option<Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Gives up on any publish still unanswered at `until`.
    pub fn until(mut self, until: Instant) -> Self {
        self.until = Some(until);
        self
    }

    /// Publishes one Event on the HelmRelease; logs (never returns) a failure.
    pub async fn publish(&self, view: &HelmReleaseView, reason: EventReason, note: String) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let event = Event {
            type_: reason.event_type(),
            reason: reason.as_str().to_owned(),
            note: Some(truncate(note)),
            action: reason.action().to_owned(),
            secondary: None,
        };
        let reference = reference(view);
        let published = recorder.publish(&event, &reference);
        let published = async {
            match self.until {
                Some(until) => tokio::time::timeout_at(until, published)
                    .await
                    .unwrap_or_else(|_| {
                        Err(kube::Error::Service(Box::new(super::DeadlineExceeded)))
                    }),
                None => published.await,
            }
        };
        let flux = async {
            if let Some(notifier) = &self.notifier {
                let flux = FluxEvent::new(
                    view,
                    event.type_ == EventType::Warning,
                    &event.reason,
                    event.note.clone().unwrap_or_default(),
                    chrono::Utc::now(),
                    notifier.instance(),
                );
                notifier.post(&flux).await;
            }
        };
        let (answer, ()) = tokio::join!(published, flux);
        if let Err(source) = answer {
            let error = Error::PublishEvent {
                object: ObjectName::new(&view.namespace, &view.name),
                reason: reason.as_str(),
                source: Box::new(source),
            };
            tracing::warn!(
                namespace = %view.namespace,
                name = %view.name,
                error = %error.failure(),
                "Event not published"
            );
        }
    }
}

/// The `regarding` reference of an Event about this HelmRelease.
pub fn reference(view: &HelmReleaseView) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{}/{}", api::GROUP, api::VERSION)),
        kind: Some(api::KIND.to_owned()),
        namespace: Some(view.namespace.clone()),
        name: Some(view.name.clone()),
        uid: view.uid.clone(),
        ..ObjectReference::default()
    }
}

/// An Event note is at most 1 kB.
fn truncate(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_the_failure_and_guardrail_reasons() {
        assert_eq!(
            EventReason::RecoveryGuardrailTripped.event_type(),
            EventType::Warning
        );
        assert_eq!(
            EventReason::StuckReleaseCorrected.event_type(),
            EventType::Normal
        );
        assert_eq!(
            EventReason::InterruptedToggleResumed.to_string(),
            "InterruptedToggleResumed"
        );
    }

    #[test]
    fn long_notes_are_cut_at_one_kilobyte() {
        let note = truncate("é".repeat(2000));
        assert!(note.len() <= 1024);
        assert!(note.ends_with("..."));
    }
}
