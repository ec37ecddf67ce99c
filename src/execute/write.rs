//! The write primitive: every write to a HelmRelease goes through
//! [`Executor::send`], which knows whether its write landed.
//!
//! A write is a JSON merge patch plus a test that recognises it on the
//! object read back: each write stamps its own RFC 3339 timestamp (in an
//! annotation or a condition) and [`Write::landed`] looks for exactly the
//! values it set. One call:
//!
//! 1. sets `metadata.resourceVersion` to the one it is given and sends the
//!    patch once, through the client without kube's built-in retry;
//! 2. classifies the answer ([`classify`]): *applied* (2xx), *not applied*
//!    (429/503: retried; other 4xx: final), *unknown* (504, a dropped
//!    connection, a read timeout, another 5xx, an unreadable 2xx body) or
//!    *conflict* (409);
//! 3. on *unknown* or *conflict*, reads the object back: carrying the
//!    write's stamp, the write landed ([`Sent::Applied`] with the object
//!    read); a 409 without it is [`Sent::Conflict`] with the object read; an
//!    unknown answer without it is re-sent (504, connection) or final
//!    (other 5xx) — never before the read-back showed it did not land;
//! 4. waits between attempts as the server asked (`Retry-After`) or with
//!    exponential backoff, and stops at its [`Budget`].
//!
//! So an applied write is never sent again blind, and no write that landed
//! is reported as failed (unless the object cannot be read back at all).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::Value;
use tokio::time::Instant;

use super::{DeadlineExceeded, Executor};
use crate::error::{Error, ObjectName};
use crate::kube_io::helmreleases::{Part, Unconfirmed, resource_version};
use crate::view::HelmReleaseView;

/// After a signal, clean-up writes (resumes, reverts) retry for at most
/// this long (inside the chart's `terminationGracePeriodSeconds: 30`).
pub const SIGNAL_BUDGET: Duration = Duration::from_secs(20);

/// How long clean-up writes (a rollback, a resume) and their read-backs may
/// still try once the run's deadline has passed: one budget for the whole
/// run, not one per step. A HelmRelease left suspended or half-corrected by
/// this tool is worse than a run a few seconds late.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// The time left for a last attempt when a backoff is cut at the budget.
const LAST_TRY: Duration = Duration::from_millis(500);

/// Until when a write may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// A write that starts something (suspend, annotation, status, marker
    /// clear): until the run's deadline; no retry after a signal.
    Run,
    /// A write that finishes or undoes what this run started (resume,
    /// revert): until the run's deadline plus [`CLEANUP_GRACE`], or
    /// [`SIGNAL_BUDGET`] after a signal, whichever comes first.
    Cleanup,
}

/// `body` with `metadata.resourceVersion` set to `rv`.
pub fn with_resource_version(mut body: Value, rv: &str) -> Value {
    body["metadata"]["resourceVersion"] = Value::from(rv);
    body
}

/// An annotation of an object read as JSON.
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// One write: what to send and how to recognise it on a read-back.
pub struct Write<'a> {
    /// Which part of the object the patch goes to.
    pub part: Part,
    /// The merge patch; `metadata.resourceVersion` is set per attempt.
    pub body: Value,
    /// Whether an object read back carries exactly what this write set.
    pub landed: &'a (dyn Fn(&Value) -> bool + Sync),
    /// The step's error, naming the object.
    pub step: fn(ObjectName, Box<kube::Error>) -> Error,
}

/// What became of one write.
#[derive(Debug)]
pub enum Sent {
    /// It landed: the server's answer, or the object read back.
    Applied(Value),
    /// 409, and the object read back does not carry it: someone else wrote
    /// the object since `resourceVersion`. The object as read, and the 409.
    Conflict(Value, Error),
    /// It did not land (refused, or the budget ran out) — or, when the
    /// object could not be read back, it is not known to have landed.
    Failed(Error),
}

/// How an answer other than 2xx is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not applied; `retry`: worth sending again (429, 503).
    NotApplied { retry: bool },
    /// May have been applied: read back first; `retry`: re-send when the
    /// read-back shows it did not land (504, connection, timeout).
    Unknown { retry: bool },
    /// 409: the `resourceVersion` is no longer the object's.
    Conflict,
}

/// Classifies a failed write's error.
pub fn classify(error: &kube::Error) -> Answer {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => Answer::Conflict,
            429 | 503 => Answer::NotApplied { retry: true },
            504 => Answer::Unknown { retry: true },
            500..=599 => Answer::Unknown { retry: false },
            _ => Answer::NotApplied { retry: false },
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => Answer::Unknown { retry: true },
        _ => Answer::Unknown { retry: false },
    }
}

/// The backoff between attempts when the server names no delay.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Executor {
    /// Sends `write` to `view`'s object with `rv`, retrying within `budget`
    /// (module docs).
    pub(super) async fn send(
        &self,
        view: &HelmReleaseView,
        rv: &str,
        write: &Write<'_>,
        budget: Budget,
    ) -> Sent {
        let body = with_resource_version(write.body.clone(), rv);
        let step = |error: kube::Error| {
            (write.step)(
                ObjectName::new(&view.namespace, &view.name),
                Box::new(error),
            )
        };
        let fail = |error: kube::Error| Sent::Failed(step(error));
        let mut delays = backoff();
        loop {
            let request = self
                .api
                .write(&view.namespace, &view.name, write.part, &body);
            let refused = match tokio::time::timeout_at(self.until(budget), request).await {
                Ok(Ok(answer)) => return Sent::Applied(answer),
                Ok(Err(refused)) => refused,
                Err(_) => Unconfirmed::from(kube::Error::Service(Box::new(DeadlineExceeded))),
            };
            let answer = classify(&refused.error);
            tracing::debug!(
                namespace = %view.namespace, name = %view.name,
                error = %refused.error, ?answer, "write not confirmed"
            );
            let delay = match answer {
                Answer::NotApplied { retry: false } => return fail(refused.error),
                Answer::NotApplied { retry: true } => refused.retry_after,
                Answer::Conflict | Answer::Unknown { .. } => match self.read_back(view).await {
                    Some(object) if (write.landed)(&object) => {
                        tracing::info!(
                            namespace = %view.namespace, name = %view.name,
                            "the write landed although its answer did not say so"
                        );
                        return Sent::Applied(object);
                    }
                    Some(object) if answer == Answer::Conflict => {
                        return Sent::Conflict(object, step(refused.error));
                    }
                    // SPEC §5: a 500 (any 5xx but 503/504) is a failed
                    // write, read back once but never sent again — a
                    // clean-up write included; the next run heals it.
                    _ if answer == (Answer::Unknown { retry: true }) => None,
                    _ => return fail(refused.error),
                },
            };
            // A delay the server named (`Retry-After`) is honoured whole; our
            // own backoff may be cut at the budget's end.
            let (delay, named) = match delay {
                Some(named) => (named, true),
                None => (delays.next().unwrap_or(Duration::from_secs(5)), false),
            };
            if !self.pause(delay, named, budget).await {
                return fail(refused.error);
            }
            tracing::info!(
                namespace = %view.namespace, name = %view.name,
                error = %refused.error, "write did not land; sending it again"
            );
        }
    }

    /// A later write of an action (SPEC §5): on a 409, while `ours` holds
    /// for the object read back (our marker or annotation is still there),
    /// sends it again with that object's `resourceVersion`. A conflict it
    /// returns means someone else took over.
    pub(super) async fn send_while_ours(
        &self,
        view: &HelmReleaseView,
        mut rv: String,
        write: &Write<'_>,
        budget: Budget,
        ours: impl Fn(&Value) -> bool,
    ) -> Sent {
        loop {
            match self.send(view, &rv, write, budget).await {
                Sent::Conflict(object, error)
                    if ours(&object) && Instant::now() < self.until(budget) =>
                {
                    match resource_version(&object) {
                        Some(fresh) => rv = fresh.to_owned(),
                        None => return Sent::Conflict(object, error),
                    }
                    tracing::info!(
                        namespace = %view.namespace, name = %view.name,
                        "someone else wrote the object; still ours: writing again"
                    );
                }
                sent => return sent,
            }
        }
    }

    /// The object as it is now, within the run's one clean-up budget;
    /// `None` when it cannot be read.
    pub(super) async fn read_back(&self, view: &HelmReleaseView) -> Option<Value> {
        let read = self.api.get(&view.namespace, &view.name);
        tokio::time::timeout_at(self.until(Budget::Cleanup), read)
            .await
            .ok()?
            .ok()
    }

    /// When `budget` ends, as of now.
    pub(super) fn until(&self, budget: Budget) -> Instant {
        let cleanup = self.deadline + CLEANUP_GRACE;
        match (budget, self.interrupt.signalled_at()) {
            (Budget::Run, _) => self.deadline,
            (Budget::Cleanup, Some(at)) => cleanup.min(at + SIGNAL_BUDGET),
            (Budget::Cleanup, None) => cleanup,
        }
    }

    /// Waits `delay` before the next attempt; false when that would pass
    /// the budget (or, for [`Budget::Run`], a signal came).
    ///
    /// A backoff of our own (`named` false) that would end past the budget
    /// is cut short so that one last attempt still goes out just before it
    /// ends: a clean-up write keeps trying for its whole budget, not for its
    /// whole budget less a backoff. A delay the server named is not cut.
    async fn pause(&self, delay: Duration, named: bool, budget: Budget) -> bool {
        let now = Instant::now();
        let Some(last_try) = self.until(budget).checked_sub(LAST_TRY) else {
            return false;
        };
        if now >= last_try || (named && now + delay >= self.until(budget)) {
            return false;
        }
        let wake = if named {
            now + delay
        } else {
            (now + delay).min(last_try)
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => true,
            () = self.cancel.cancelled() => match budget {
                Budget::Run => false,
                Budget::Cleanup if wake >= self.until(budget) => false,
                Budget::Cleanup => {
                    tokio::time::sleep_until(wake).await;
                    true
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        ))
    }

    #[test]
    fn answers_are_classified_as_spec_5_says() {
        assert_eq!(classify(&api(409)), Answer::Conflict);
        for code in [429, 503] {
            assert_eq!(classify(&api(code)), Answer::NotApplied { retry: true });
        }
        assert_eq!(classify(&api(504)), Answer::Unknown { retry: true });
        assert_eq!(classify(&api(500)), Answer::Unknown { retry: false });
        for code in [400, 403, 404, 422] {
            assert_eq!(classify(&api(code)), Answer::NotApplied { retry: false });
        }
        let dropped = kube::Error::Service(Box::new(DeadlineExceeded));
        assert_eq!(classify(&dropped), Answer::Unknown { retry: true });
    }
}
