//! What the test and the serving tasks share: the rules with their counters,
//! the exchange log, the held requests, and the wake-ups for waiters.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::{oneshot, watch};

use crate::rules::{Action, ActionKind, RequestInfo, Rule, RuleId};

/// What became of one request, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still being handled (forwarding, delayed).
    Pending,
    /// Kept by a [`Action::Hold`] rule, not yet released.
    Held,
    /// The client got an answer with this status (for a stream: its head).
    Answered(u16),
    /// The proxy closed the client's connection without an answer.
    Dropped,
    /// The client went away before it was answered.
    ClientGone,
    /// The proxy could not reach the upstream (or lost it mid-answer); the
    /// client's connection was closed unanswered.
    UpstreamError(String),
}

/// One request through the proxy, as recorded for assertions.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Arrival order, from 1.
    pub id: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub namespace: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub watch: bool,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// The rule that acted on it (`None`: forwarded by default).
    pub rule: Option<RuleId>,
    /// What was done (`Forward` when no rule acted). For a held request
    /// that was released, the action it was released with.
    pub action: ActionKind,
    /// Whether it was sent to the upstream API server.
    pub forwarded: bool,
    /// The upstream's status, once its answer arrived.
    pub upstream_status: Option<u16>,
    pub outcome: Outcome,
}

impl Exchange {
    /// The status the client got, if it got an answer.
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Answered(s) => Some(s),
            _ => None,
        }
    }

    /// `METHOD path[?query]`.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// A rule's counters: `matched` counts requests that passed its matchers
/// (while it was active), `fired` those it acted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub matched: u64,
    pub fired: u64,
}

/// A request kept by a [`Action::Hold`] rule.
#[derive(Debug, Clone)]
pub struct HeldRequest {
    /// The [`Exchange::id`] of the request; pass it to
    /// [`crate::ProxyHandle::release`].
    pub id: u64,
    pub rule: RuleId,
    pub request: RequestInfo,
    /// Whether its client is still waiting (false once it closed its
    /// connection).
    pub client_connected: bool,
}

pub(crate) struct RuleEntry {
    pub id: RuleId,
    pub rule: Rule,
    pub stats: RuleStats,
    pub active: bool,
}

pub(crate) struct Held {
    pub info: HeldRequest,
    /// The request's headers (its bearer token), to forward it after its
    /// client has gone.
    pub headers: hyper::HeaderMap,
    pub tx: oneshot::Sender<Action>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub next_rule: u64,
    pub next_exchange: u64,
    pub rules: Vec<RuleEntry>,
    pub log: Vec<Exchange>,
    pub held: BTreeMap<u64, Held>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    tick: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            inner: Mutex::new(Inner::default()),
            cond: Condvar::new(),
            tick: watch::channel(0).0,
        }
    }
}

/// The error of a wait whose deadline passed; says what was seen.
fn timed_out(what: &str, timeout: Duration, inner: &Inner) -> anyhow::Error {
    let tail: Vec<String> = inner
        .log
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|e| format!("  #{} {} -> {:?}", e.id, e.line(), e.outcome))
        .collect();
    anyhow!(
        "fault-proxy: timed out after {timeout:?} waiting for {what}; rules: {:?}; last requests:\n{}",
        inner
            .rules
            .iter()
            .map(|r| (r.id.0, r.stats))
            .collect::<Vec<_>>(),
        tail.join("\n")
    )
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every waiter; call after any change.
    pub fn changed(&self) {
        self.cond.notify_all();
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// Applies `f` to the exchange `id` and wakes waiters.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut Exchange)) {
        {
            let mut inner = self.lock();
            if let Some(e) = inner.log.iter_mut().rev().find(|e| e.id == id) {
                f(e);
            }
        }
        self.changed();
    }

    /// Blocks until `f` answers `Some` or `timeout` passes.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Inner) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if let Some(t) = f(&inner) {
                return Ok(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out(what, timeout, &inner));
            }
            inner = self
                .cond
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// As [`Shared::wait`], without blocking the async runtime.
    pub async fn wait_async<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Inner) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.tick.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let inner = self.lock();
                if let Some(t) = f(&inner) {
                    return Ok(t);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(timed_out(what, timeout, &inner));
                }
            }
            // A change between the check and here marks `rx` changed, so
            // none is missed.
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
    }
}
