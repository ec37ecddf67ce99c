//! The write primitive, [`Writer`]: every write to a HelmRelease goes
//! through [`Writer::send`], which knows whether its write landed.
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

use tokio_util::sync::CancellationToken;

use crate::error::{Error, ObjectName};
use crate::failure::Failure;
use crate::interrupt::Interrupt;
use crate::kube_io::HelmReleases;
use crate::kube_io::helmreleases::{Part, Unconfirmed, resource_version};
use crate::patches::with_resource_version;
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

/// The run's deadline passed while a request was waiting for its answer.
#[derive(Debug, thiserror::Error)]
#[error("{}", Failure::DEADLINE)]
pub struct DeadlineExceeded;

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

/// The backoff between attempts when the server names no delay: from
/// 200 ms, doubling, capped at 5 s; the jitter adds up to as much again.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sends writes and reads objects back, within the run's deadline and, for
/// clean-up writes, its clean-up budget (module docs).
pub struct Writer {
    api: HelmReleases,
    deadline: Instant,
    cancel: CancellationToken,
    interrupt: Interrupt,
}

impl Writer {
    /// A writer through `api` for a run ending at `deadline`.
    pub fn new(api: HelmReleases, deadline: Instant, interrupt: &Interrupt) -> Self {
        Self {
            api,
            deadline,
            cancel: interrupt.token(),
            interrupt: interrupt.clone(),
        }
    }

    /// Sends `write` to `view`'s object with `rv`, retrying within `budget`
    /// (module docs).
    pub async fn send(
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
    pub async fn send_while_ours(
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
    pub async fn read_back(&self, view: &HelmReleaseView) -> Option<Value> {
        let read = self.api.get(&view.namespace, &view.name);
        tokio::time::timeout_at(self.until(Budget::Cleanup), read)
            .await
            .ok()?
            .ok()
    }

    /// When `budget` ends, as of now.
    pub fn until(&self, budget: Budget) -> Instant {
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
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, PoisonError};

    use bytes::Bytes;
    use http_body_util::Full;
    use serde_json::json;

    use super::*;
    use crate::model::DryRun;

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

    const STAMP: &str = "2026-12-04T12:00:00.000000001Z";

    /// One scripted answer of the stand-in server.
    #[derive(Clone)]
    enum Reply {
        /// An error status, with `Retry-After` seconds when given.
        Code(u16, Option<u64>),
        /// 200 with the object, carrying our stamp or not.
        Object { stamped: bool },
    }

    /// A stand-in API server: answers from a script, logs each request's
    /// method and (paused-clock) time.
    #[derive(Clone, Default)]
    struct Server {
        script: Arc<Mutex<VecDeque<Reply>>>,
        log: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    impl Server {
        fn new(script: impl IntoIterator<Item = Reply>) -> Self {
            let server = Server::default();
            server
                .script
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(script);
            server
        }

        fn log(&self) -> Vec<(String, Instant)> {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        fn methods(&self) -> Vec<String> {
            self.log().into_iter().map(|(m, _)| m).collect()
        }

        fn answer(&self, method: String) -> http::Response<Full<Bytes>> {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((method, Instant::now()));
            let reply = self
                .script
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
                .unwrap_or(Reply::Code(500, None));
            let (code, retry_after, body) = match reply {
                Reply::Object { stamped } => {
                    let stamp = if stamped { STAMP } else { "an older write" };
                    let object = json!({
                        "metadata": {
                            "namespace": "apps", "name": "web", "resourceVersion": "8",
                            "annotations": {"example.com/stamp": stamp},
                        },
                    });
                    (200, None, object.to_string())
                }
                Reply::Code(code, retry_after) => {
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "scripted", "reason": "Scripted", "code": code,
                    });
                    (code, retry_after, status.to_string())
                }
            };
            let mut response = http::Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(seconds) = retry_after {
                response = response.header(http::header::RETRY_AFTER, seconds.to_string());
            }
            response
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        }

        fn client(&self) -> kube::Client {
            let server = self.clone();
            let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
                let server = server.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(server.answer(request.method().to_string()))
                }
            });
            kube::Client::new(service, "default")
        }

        fn writer(&self, deadline: Duration, interrupt: &Interrupt) -> Writer {
            let api = HelmReleases::new(self.client(), DryRun::None);
            Writer::new(api, Instant::now() + deadline, interrupt)
        }
    }

    fn view() -> HelmReleaseView {
        let json =
            json!({"metadata": {"namespace": "apps", "name": "web", "resourceVersion": "7"}});
        HelmReleaseView::from_json(&json).unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    fn stamped(object: &Value) -> bool {
        crate::patches::annotation(object, "example.com/stamp") == Some(STAMP)
    }

    fn write() -> Write<'static> {
        Write {
            part: Part::Object,
            body: json!({"metadata": {"annotations": {"example.com/stamp": STAMP}}}),
            landed: &stamped,
            step: |object, source| Error::PatchAnnotation { object, source },
        }
    }

    async fn send(server: &Server, deadline: Duration, budget: Budget) -> (Sent, Duration) {
        let writer = server.writer(deadline, &Interrupt::new());
        let started = Instant::now();
        let sent = writer.send(&view(), "7", &write(), budget).await;
        (sent, started.elapsed())
    }

    fn is_applied(sent: &Sent) -> bool {
        matches!(sent, Sent::Applied(_))
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_sent_again_once_its_retry_after_has_passed() {
        let server = Server::new([Reply::Code(429, Some(3)), Reply::Object { stamped: true }]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Run).await;
        assert!(is_applied(&sent), "{sent:?}");
        let log = server.log();
        assert_eq!(server.methods(), ["PATCH", "PATCH"]);
        assert!(log[1].1 - log[0].1 >= Duration::from_secs(3), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_budget_is_not_waited_for() {
        let server = Server::new([Reply::Code(503, Some(60))]);
        let (sent, took) = send(&server, Duration::from_secs(10), Budget::Run).await;
        assert!(matches!(sent, Sent::Failed(_)), "{sent:?}");
        assert_eq!(server.methods(), ["PATCH"]);
        assert!(took < Duration::from_secs(1), "gave up at once: {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_without_retry_after_backs_off_until_the_deadline_and_no_longer() {
        let server = Server::new(std::iter::repeat_n(Reply::Code(503, None), 1000));
        let (sent, took) = send(&server, Duration::from_secs(20), Budget::Run).await;
        assert!(matches!(sent, Sent::Failed(_)), "{sent:?}");
        let log = server.log();
        assert!(
            log.len() >= 5,
            "retried with backoff: {} attempts",
            log.len()
        );
        assert!(took <= Duration::from_secs(20), "{took:?}");
        let gaps: Vec<Duration> = log.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert!(
            gaps.iter()
                .all(|g| *g <= Duration::from_secs(10) + Duration::from_millis(1)),
            "the backoff never waits past its cap (5 s, jitter at most doubles it): {gaps:?}"
        );
        assert!(gaps.first() < gaps.get(3), "the backoff grows: {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cleanup_write_keeps_trying_through_the_grace_after_the_deadline() {
        let server = Server::new(std::iter::repeat_n(Reply::Code(503, None), 1000));
        let (sent, took) = send(&server, Duration::from_secs(2), Budget::Cleanup).await;
        assert!(matches!(sent, Sent::Failed(_)), "{sent:?}");
        let last = server.log().last().map(|(_, at)| *at);
        assert!(took <= Duration::from_secs(2) + CLEANUP_GRACE, "{took:?}");
        assert!(
            last.is_some_and(|at| at.elapsed() < LAST_TRY + Duration::from_millis(1)),
            "the last attempt goes out just before the grace ends"
        );
        assert!(took > Duration::from_secs(2) + CLEANUP_GRACE - LAST_TRY - Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_shortens_the_cleanup_budget_and_stops_a_first_write() {
        let server = Server::new(std::iter::repeat_n(Reply::Code(503, None), 1000));
        let interrupt = Interrupt::new();
        let writer = server.writer(Duration::from_secs(600), &interrupt);
        interrupt.trigger(crate::exit::ExitCode::Terminated);
        let started = Instant::now();
        let first = writer.send(&view(), "7", &write(), Budget::Run).await;
        assert!(matches!(first, Sent::Failed(_)), "{first:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let cleanup = writer.send(&view(), "7", &write(), Budget::Cleanup).await;
        assert!(matches!(cleanup, Sent::Failed(_)), "{cleanup:?}");
        let took = started.elapsed();
        assert!(
            took <= SIGNAL_BUDGET && took > SIGNAL_BUDGET - Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_504_whose_write_landed_is_recognised_on_the_read_back_and_not_sent_again() {
        let server = Server::new([Reply::Code(504, None), Reply::Object { stamped: true }]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Run).await;
        assert!(is_applied(&sent), "{sent:?}");
        assert_eq!(server.methods(), ["PATCH", "GET"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_504_that_did_not_land_is_sent_again() {
        let server = Server::new([
            Reply::Code(504, None),
            Reply::Object { stamped: false },
            Reply::Object { stamped: true },
        ]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Run).await;
        assert!(is_applied(&sent), "{sent:?}");
        assert_eq!(server.methods(), ["PATCH", "GET", "PATCH"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_is_read_back_once_and_never_sent_again_even_to_clean_up() {
        for budget in [Budget::Run, Budget::Cleanup] {
            let server = Server::new([Reply::Code(500, None), Reply::Object { stamped: false }]);
            let (sent, took) = send(&server, Duration::from_secs(60), budget).await;
            assert!(matches!(sent, Sent::Failed(_)), "{budget:?}: {sent:?}");
            assert_eq!(server.methods(), ["PATCH", "GET"], "{budget:?}");
            assert!(took < Duration::from_secs(1), "{budget:?}: {took:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_whose_write_landed_is_applied() {
        let server = Server::new([Reply::Code(500, None), Reply::Object { stamped: true }]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Run).await;
        assert!(is_applied(&sent), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_409_without_our_stamp_is_a_conflict_with_the_object_read() {
        let server = Server::new([Reply::Code(409, None), Reply::Object { stamped: false }]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Run).await;
        match sent {
            Sent::Conflict(object, _) => assert_eq!(resource_version(&object), Some("8")),
            other => panic!("not a conflict: {other:?}"),
        }
        assert_eq!(server.methods(), ["PATCH", "GET"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final() {
        let server = Server::new([Reply::Code(403, None)]);
        let (sent, _) = send(&server, Duration::from_secs(60), Budget::Cleanup).await;
        assert!(matches!(sent, Sent::Failed(_)), "{sent:?}");
        assert_eq!(server.methods(), ["PATCH"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_write_is_sent_again_after_a_409_while_the_object_is_still_ours() {
        let server = Server::new([
            Reply::Code(409, None),
            Reply::Object { stamped: false },
            Reply::Object { stamped: true },
        ]);
        let writer = server.writer(Duration::from_secs(60), &Interrupt::new());
        let sent = writer
            .send_while_ours(&view(), "7".to_owned(), &write(), Budget::Cleanup, |_| true)
            .await;
        assert!(is_applied(&sent), "{sent:?}");
        assert_eq!(server.methods(), ["PATCH", "GET", "PATCH"]);
        let gone = Server::new([Reply::Code(409, None), Reply::Object { stamped: false }]);
        let writer = gone.writer(Duration::from_secs(60), &Interrupt::new());
        let sent = writer
            .send_while_ours(&view(), "7".to_owned(), &write(), Budget::Cleanup, |_| {
                false
            })
            .await;
        assert!(matches!(sent, Sent::Conflict(..)), "{sent:?}");
    }
}
