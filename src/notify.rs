//! Flux notifications (SPEC §10): every Event this run emits is also POSTed
//! to notification-controller's event API (`--events-addr`), as the JSON its
//! event server takes from Flux's own controllers (fluxcd/pkg
//! `runtime/events`), so an `Alert` on HelmReleases routes it to a chat or a
//! pager.
//!
//! # Guarantees
//!
//! * Nothing is posted in a dry run ([`Notifier::for_run`] returns `None`).
//! * A receiver that refuses, fails, rate-limits (429) or hangs is logged at
//!   warn level; it never changes an action's result or the exit code.
//! * All posts of one run together wait at most [`BUDGET`] (5 s): the time
//!   during which at least one post is waiting counts against it, so
//!   concurrent posts share it and a hung receiver costs the run 5 s once,
//!   not 5 s per Event. Once it is spent, later Events are not posted (one
//!   warn line says so).
//! * One attempt per Event, no retry (a retry could only eat the budget).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::time::Instant;

use crate::model::{DryRun, FIELD_MANAGER, api};
use crate::view::HelmReleaseView;

/// How long all posts of one run may wait in total.
pub const BUDGET: Duration = Duration::from_secs(5);

/// `--events-addr` that is not a plain `http://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(String);

/// Parses `--events-addr`: `http://<host>[:port][/path]`.
///
/// # Errors
/// [`AddressError`] saying what is wrong (https, no host, not a URL).
pub fn parse_address(addr: &str) -> Result<Uri, AddressError> {
    let uri: Uri = addr
        .trim()
        .parse()
        .map_err(|e| AddressError(format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(AddressError(
                "https is not supported: notification-controller's event API is plain HTTP \
                 inside the cluster (http://notification-controller.flux-system.svc.cluster.local./)"
                    .to_string(),
            ));
        }
        _ => return Err(AddressError("the URL must start with http://".to_string())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(AddressError("the URL has no host".to_string()));
    }
    Ok(uri)
}

/// The object a Flux event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    pub kind: &'static str,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One Flux event, as notification-controller's event API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxEvent {
    pub involved_object: InvolvedObject,
    /// `info` (a Normal Event) or `error` (a Warning).
    pub severity: &'static str,
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub message: String,
    pub reason: String,
    pub reporting_controller: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<String>,
}

impl FluxEvent {
    /// The Flux event for one of our Events on `view`.
    pub fn new(
        view: &HelmReleaseView,
        warning: bool,
        reason: &str,
        message: String,
        at: DateTime<Utc>,
        instance: Option<String>,
    ) -> FluxEvent {
        FluxEvent {
            involved_object: InvolvedObject {
                kind: api::KIND,
                api_version: format!("{}/{}", api::GROUP, api::VERSION),
                namespace: view.namespace.clone(),
                name: view.name.clone(),
                uid: view.uid.clone(),
            },
            severity: if warning { "error" } else { "info" },
            timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            message,
            reason: reason.to_string(),
            reporting_controller: FIELD_MANAGER,
            reporting_instance: instance,
        }
    }
}

/// The shared wait budget of one run's posts.
#[derive(Debug, Default)]
struct Budget {
    /// Waiting time already used by finished busy periods.
    spent: Duration,
    /// Since when at least one post has been waiting.
    busy_since: Option<Instant>,
    in_flight: usize,
    /// The "budget spent" line was logged.
    exhausted_logged: bool,
}

impl Budget {
    /// Starts a post at `now`: the instant it must give up, or `None` when
    /// the budget is spent.
    fn start(&mut self, now: Instant) -> Option<Instant> {
        let busy = self.busy_since.map_or(Duration::ZERO, |since| now - since);
        let remaining = BUDGET.checked_sub(self.spent + busy)?;
        if remaining.is_zero() {
            return None;
        }
        if self.in_flight == 0 {
            self.busy_since = Some(now);
        }
        self.in_flight += 1;
        Some(now + remaining)
    }

    /// Ends a post at `now`.
    fn end(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0
            && let Some(since) = self.busy_since.take()
        {
            self.spent += now - since;
        }
    }
}

/// Posts Flux events to one address.
#[derive(Clone)]
pub struct Notifier {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    instance: Option<String>,
    budget: Arc<Mutex<Budget>>,
}

impl Notifier {
    /// The notifier of a run: `None` without `--events-addr` or in any dry
    /// run.
    pub fn for_run(events_addr: Option<&Uri>, dry_run: DryRun) -> Option<Notifier> {
        if dry_run != DryRun::None {
            return None;
        }
        let uri = events_addr?.clone();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(BUDGET));
        Some(Notifier {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            instance: std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .filter(|s| !s.is_empty()),
            budget: Arc::new(Mutex::new(Budget::default())),
        })
    }

    /// `reportingInstance` of every event.
    pub fn instance(&self) -> Option<String> {
        self.instance.clone()
    }

    /// Posts one event; logs (never returns) a failure.
    pub async fn post(&self, event: &FluxEvent) {
        let started = self.lock().start(Instant::now());
        let Some(until) = started else {
            let mut budget = self.lock();
            if !budget.exhausted_logged {
                budget.exhausted_logged = true;
                tracing::warn!(
                    events_addr = %self.uri,
                    "Flux events: the 5s budget of this run is spent; later events are not posted"
                );
            }
            return;
        };
        let answer = tokio::time::timeout_at(until, self.send(event)).await;
        self.lock().end(Instant::now());
        let (namespace, name) = (
            event.involved_object.namespace.as_str(),
            event.involved_object.name.as_str(),
        );
        let problem = match answer {
            Ok(Ok(status)) if (200..300).contains(&status) => return,
            Ok(Ok(429)) => "rate-limited (429): notification-controller already has this event \
                            within its rate-limit interval"
                .to_string(),
            Ok(Ok(status)) => format!("answered HTTP {status}"),
            Ok(Err(error)) => error,
            Err(_) => "no answer within the run's 5s budget".to_string(),
        };
        tracing::warn!(
            namespace,
            name,
            reason = %event.reason,
            events_addr = %self.uri,
            "Flux event not delivered: {problem}"
        );
    }

    async fn send(&self, event: &FluxEvent) -> Result<u16, String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let request = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, FIELD_MANAGER)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let status = response.status().as_u16();
        // Read the (small) answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok(status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_posts_share_one_budget() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = Budget::default();
        // Two posts start together: both may wait until t0 + 5s.
        assert_eq!(b.start(t0), Some(t0 + s(5)));
        assert_eq!(b.start(t0 + s(1)), Some(t0 + s(5)));
        b.end(t0 + s(2));
        b.end(t0 + s(3));
        // 3s spent while busy; the idle time after does not count.
        assert_eq!(b.start(t0 + s(60)), Some(t0 + s(62)));
        b.end(t0 + s(62));
        assert_eq!(b.start(t0 + s(70)), None);
    }

    #[test]
    fn a_hung_receiver_costs_the_run_five_seconds_once() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        let until = b.start(t0);
        assert_eq!(until, Some(t0 + BUDGET));
        b.end(t0 + BUDGET);
        assert_eq!(b.start(t0 + BUDGET + Duration::from_millis(1)), None);
    }

    #[test]
    fn only_plain_http_addresses_are_accepted() {
        assert!(
            parse_address("http://notification-controller.flux-system.svc.cluster.local./").is_ok()
        );
        assert!(parse_address("http://127.0.0.1:9090").is_ok());
        for bad in [
            "https://x/",
            "notification-controller",
            "ftp://x",
            "http://",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normal_is_info_and_warning_is_error() {
        let view = HelmReleaseView::from_json(&serde_json::json!({
            "metadata": {"namespace": "apps", "name": "web", "uid": "u-1", "resourceVersion": "1"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let at = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let event = FluxEvent::new(&view, false, "StuckReleaseCorrected", "m".into(), at, None);
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "involvedObject": {"kind": "HelmRelease", "apiVersion": "helm.toolkit.fluxcd.io/v2",
                                   "namespace": "apps", "name": "web", "uid": "u-1"},
                "severity": "info",
                "timestamp": "2026-01-01T12:00:00Z",
                "message": "m",
                "reason": "StuckReleaseCorrected",
                "reportingController": "stuck-hr-recovery",
            })
        );
        let warning = FluxEvent::new(&view, true, "X", "m".into(), at, Some("pod-1".into()));
        assert_eq!(warning.severity, "error");
        assert_eq!(
            serde_json::to_value(&warning).unwrap_or_default()["reportingInstance"],
            "pod-1"
        );
    }
}
