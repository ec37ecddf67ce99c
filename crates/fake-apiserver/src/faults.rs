//! Fault injection: fail, delay or drop chosen requests, and run hooks when
//! they arrive; apply a write and then hide the answer (an error or a dropped
//! connection); refuse with `Retry-After`; let another writer change the
//! target object just before the request is handled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::log::RecordedRequest;

/// A callback run synchronously when a matching request arrives.
pub type Hook = Arc<dyn Fn(&RecordedRequest) + Send + Sync>;

/// The user and field manager of the concurrent writer
/// ([`FaultAction::ConcurrentWrite`]), as shown in the request log.
pub const OTHER_WRITER: &str = "other-writer";

/// What a triggered fault does after its hook (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Handle the request normally (hook-only faults).
    Proceed,
    /// Answer a real-shaped `Status` with this code; nothing is applied.
    Respond(u16),
    /// Wait, then handle normally.
    Delay(Duration),
    /// Close the connection without answering; nothing is applied.
    Drop,
    /// Handle (and persist) the request normally, then answer a real-shaped
    /// `Status` with this code instead of the result. 504 is the `Timeout`
    /// kube-apiserver sends when its request deadline beats the storage
    /// write ([`crate::ApiError::request_timeout`]). A request the server
    /// itself refuses (404, 409, 422...) gets that refusal, unchanged.
    ApplyThenRespond(u16),
    /// Handle (and persist) the request normally, then close the
    /// connection without answering (what kube-apiserver's timeout filter
    /// does when the handler had begun its answer). A refusal by the server
    /// is answered, unchanged.
    ApplyThenDrop,
    /// Refuse with this code (429 or 503) and a `Retry-After: seconds`
    /// header (and `details.retryAfterSeconds`); nothing is applied.
    RespondRetryAfter { code: u16, seconds: u64 },
    /// As the request filters in front of the handlers answer (API Priority
    /// and Fairness and max-in-flight: 429 "Too many requests, please try
    /// again later."): a plain-text body, not a `Status`, with
    /// `Retry-After: seconds`; nothing is applied. kube's client reports it
    /// as an `Api` error with reason "Failed to parse error data".
    RespondPlainRetryAfter { code: u16, seconds: u64 },
    /// Before the request is handled, user [`OTHER_WRITER`] writes this JSON
    /// merge patch to the request's target object (same namespace and
    /// name) through the ordinary patch path: persisted, resourceVersion
    /// bumped, logged as its own request. Then the request is handled
    /// normally.
    ConcurrentWrite(Value),
    /// As [`FaultAction::ConcurrentWrite`], to the `status` subresource.
    ConcurrentStatusWrite(Value),
}

impl FaultAction {
    /// Whether the request is still handled (and persisted) normally.
    pub fn applies(&self) -> bool {
        matches!(
            self,
            FaultAction::Proceed
                | FaultAction::Delay(_)
                | FaultAction::ApplyThenRespond(_)
                | FaultAction::ApplyThenDrop
                | FaultAction::ConcurrentWrite(_)
                | FaultAction::ConcurrentStatusWrite(_)
        )
    }
}

/// A write another client makes just before a matched request is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherWrite {
    /// A JSON merge patch.
    pub patch: Value,
    /// Written to the `status` subresource.
    pub status: bool,
}

/// A matcher (method, resource, subresource, namespace, name, which
/// occurrences) plus an action and an optional hook.
///
/// `subresource: None` matches only requests to the main resource, `Some("*")`
/// any subresource or none;
/// method and resource `"*"` match anything.
#[derive(Clone)]
pub struct Fault {
    pub method: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// 1-based first matching request to fail; `None` = from the first.
    pub nth: Option<u64>,
    /// How many times to fire; `None` = every time (or once when `nth` is set).
    pub times: Option<u64>,
    pub action: FaultAction,
    pub hook: Option<Hook>,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fault")
            .field("method", &self.method)
            .field("resource", &self.resource)
            .field("subresource", &self.subresource)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("nth", &self.nth)
            .field("times", &self.times)
            .field("action", &self.action)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Fault {
    /// Matches `method` (e.g. "PATCH") on `resource` (plural) and `subresource`.
    pub fn on(method: &str, resource: &str, subresource: Option<&str>) -> Self {
        Fault {
            method: method.to_ascii_uppercase(),
            resource: resource.to_string(),
            subresource: subresource.map(str::to_string),
            namespace: None,
            name: None,
            nth: None,
            times: None,
            action: FaultAction::Proceed,
            hook: None,
        }
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Fire only from the n-th (1-based) matching request on (once, unless `times`).
    pub fn nth(mut self, n: u64) -> Self {
        self.nth = Some(n.max(1));
        self
    }

    /// Fire at most `k` times.
    pub fn times(mut self, k: u64) -> Self {
        self.times = Some(k);
        self
    }

    pub fn respond(mut self, code: u16) -> Self {
        self.action = FaultAction::Respond(code);
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.action = FaultAction::Delay(d);
        self
    }

    pub fn drop_connection(mut self) -> Self {
        self.action = FaultAction::Drop;
        self
    }

    /// Apply the request, then answer `code` ([`FaultAction::ApplyThenRespond`]).
    pub fn apply_then_respond(mut self, code: u16) -> Self {
        self.action = FaultAction::ApplyThenRespond(code);
        self
    }

    /// Apply the request, then answer kube-apiserver's 504 `Timeout`.
    pub fn apply_then_timeout(self) -> Self {
        self.apply_then_respond(504)
    }

    /// Apply the request, then close the connection unanswered.
    pub fn apply_then_drop(mut self) -> Self {
        self.action = FaultAction::ApplyThenDrop;
        self
    }

    /// Refuse with `code` and `Retry-After: seconds`; nothing applied.
    pub fn respond_retry_after(mut self, code: u16, seconds: u64) -> Self {
        self.action = FaultAction::RespondRetryAfter { code, seconds };
        self
    }

    /// Refuse like the APF filter: plain text, `Retry-After: seconds`.
    pub fn respond_plain_retry_after(mut self, code: u16, seconds: u64) -> Self {
        self.action = FaultAction::RespondPlainRetryAfter { code, seconds };
        self
    }

    /// Another writer merge-patches the target first ([`FaultAction::ConcurrentWrite`]).
    pub fn concurrent_write(mut self, merge_patch: Value) -> Self {
        self.action = FaultAction::ConcurrentWrite(merge_patch);
        self
    }

    /// Another writer merge-patches the target's `status` first.
    pub fn concurrent_status_write(mut self, merge_patch: Value) -> Self {
        self.action = FaultAction::ConcurrentStatusWrite(merge_patch);
        self
    }

    pub fn hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn matches(&self, r: &RecordedRequest) -> bool {
        (self.method == "*" || self.method == r.method)
            && (self.resource == "*" || r.resource.as_deref() == Some(self.resource.as_str()))
            && (self.subresource.as_deref() == Some("*") || self.subresource == r.subresource)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| r.namespace.as_ref() == Some(n))
            && self
                .name
                .as_ref()
                .is_none_or(|n| r.name.as_ref() == Some(n))
    }
}

/// A fault with its counters.
#[derive(Debug)]
pub struct ArmedFault {
    fault: Fault,
    matched: u64,
    fired: u64,
}

/// What to do with one request, after every matching fault was consulted.
pub struct Verdict {
    pub hooks: Vec<Hook>,
    pub delay: Duration,
    /// Writes another client makes first, in the order of the faults.
    pub other_writes: Vec<OtherWrite>,
    /// The first matching answer-shaping action (`Respond`, `Drop`,
    /// `ApplyThen...`, `RespondRetryAfter`), or `Proceed`.
    pub action: FaultAction,
}

/// All armed faults.
#[derive(Debug, Default)]
pub struct Faults(Vec<ArmedFault>);

impl Faults {
    pub fn add(&mut self, fault: Fault) {
        self.0.push(ArmedFault {
            fault,
            matched: 0,
            fired: 0,
        });
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Counts the request against every matching fault and decides.
    pub fn consult(&mut self, r: &RecordedRequest) -> Verdict {
        let mut v = Verdict {
            hooks: Vec::new(),
            delay: Duration::ZERO,
            other_writes: Vec::new(),
            action: FaultAction::Proceed,
        };
        for armed in &mut self.0 {
            if !armed.fault.matches(r) {
                continue;
            }
            armed.matched += 1;
            let start = armed.fault.nth.unwrap_or(1);
            let limit = armed
                .fault
                .times
                .or(armed.fault.nth.map(|_| 1))
                .unwrap_or(u64::MAX);
            if armed.matched < start || armed.fired >= limit {
                continue;
            }
            armed.fired += 1;
            if let Some(h) = &armed.fault.hook {
                v.hooks.push(h.clone());
            }
            match &armed.fault.action {
                FaultAction::Delay(d) => v.delay += *d,
                FaultAction::Proceed => {}
                FaultAction::ConcurrentWrite(p) => v.other_writes.push(OtherWrite {
                    patch: p.clone(),
                    status: false,
                }),
                FaultAction::ConcurrentStatusWrite(p) => v.other_writes.push(OtherWrite {
                    patch: p.clone(),
                    status: true,
                }),
                a @ (FaultAction::Respond(_)
                | FaultAction::Drop
                | FaultAction::ApplyThenRespond(_)
                | FaultAction::ApplyThenDrop
                | FaultAction::RespondRetryAfter { .. }
                | FaultAction::RespondPlainRetryAfter { .. }) => {
                    if v.action == FaultAction::Proceed {
                        v.action = a.clone();
                    }
                }
            }
        }
        v
    }
}

/// One entry of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioFault {
    pub method: String,
    pub resource: String,
    #[serde(default)]
    pub subresource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub nth: Option<u64>,
    #[serde(default)]
    pub times: Option<u64>,
    #[serde(default)]
    pub respond: Option<u16>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub drop: bool,
    /// With `respond`: add `Retry-After` and `details.retryAfterSeconds`.
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// With `respond` and `retryAfterSeconds`: a plain-text body as the
    /// APF filter writes, not a `Status`.
    #[serde(default)]
    pub plain_text: bool,
    /// Apply, then answer this code (`true` = 504 `Timeout`).
    #[serde(default)]
    pub apply_then_respond: Option<CodeOrDefault>,
    /// Apply, then drop the connection.
    #[serde(default)]
    pub apply_then_drop: bool,
    /// A merge patch another writer applies to the target first.
    #[serde(default)]
    pub concurrent_write: Option<Value>,
    /// A merge patch another writer applies to the target's `status` first.
    #[serde(default)]
    pub concurrent_status_write: Option<Value>,
}

/// `applyThenRespond: 503` or `applyThenRespond: true` (504).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CodeOrDefault {
    Code(u16),
    Default(bool),
}

impl ScenarioFault {
    pub fn into_fault(self) -> anyhow::Result<Fault> {
        let mut f = Fault::on(&self.method, &self.resource, self.subresource.as_deref());
        f.namespace = self.namespace;
        f.name = self.name;
        f.nth = self.nth;
        f.times = self.times;
        let actions = usize::from(self.respond.is_some())
            + usize::from(self.delay_ms.is_some())
            + usize::from(self.drop)
            + usize::from(self.apply_then_respond.is_some())
            + usize::from(self.apply_then_drop)
            + usize::from(self.concurrent_write.is_some())
            + usize::from(self.concurrent_status_write.is_some());
        anyhow::ensure!(
            actions <= 1,
            "a scenario fault takes at most one of respond, delayMs, drop, applyThenRespond, \
             applyThenDrop, concurrentWrite, concurrentStatusWrite"
        );
        anyhow::ensure!(
            self.retry_after_seconds.is_none() || self.respond.is_some(),
            "retryAfterSeconds goes with respond"
        );
        anyhow::ensure!(
            !self.plain_text || self.retry_after_seconds.is_some(),
            "plainText goes with respond and retryAfterSeconds"
        );
        for p in [&self.concurrent_write, &self.concurrent_status_write]
            .into_iter()
            .flatten()
        {
            anyhow::ensure!(p.is_object(), "a concurrent write is a merge patch object");
        }
        if let Some(code) = self.respond {
            f = match self.retry_after_seconds {
                Some(seconds) if self.plain_text => f.respond_plain_retry_after(code, seconds),
                Some(seconds) => f.respond_retry_after(code, seconds),
                None => f.respond(code),
            };
        } else if let Some(a) = self.apply_then_respond {
            f = match a {
                CodeOrDefault::Code(code) => f.apply_then_respond(code),
                CodeOrDefault::Default(true) => f.apply_then_timeout(),
                CodeOrDefault::Default(false) => f,
            };
        } else if self.apply_then_drop {
            f = f.apply_then_drop();
        } else if let Some(p) = self.concurrent_write {
            f = f.concurrent_write(p);
        } else if let Some(p) = self.concurrent_status_write {
            f = f.concurrent_status_write(p);
        } else if let Some(ms) = self.delay_ms {
            f = f.delay(Duration::from_millis(ms));
        } else if self.drop {
            f = f.drop_connection();
        }
        Ok(f)
    }
}

/// Reads a scenario file: a YAML list of faults (or `{faults: [...]}`).
pub fn load_scenario(path: &std::path::Path) -> anyhow::Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading scenario {}", path.display()))?;
    parse_scenario(&text).with_context(|| format!("parsing scenario {}", path.display()))
}

pub fn parse_scenario(text: &str) -> anyhow::Result<Vec<Fault>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Doc {
        List(Vec<ScenarioFault>),
        Wrapped { faults: Vec<ScenarioFault> },
    }
    let doc: Doc = serde_saphyr::from_str(text)?;
    let list = match doc {
        Doc::List(l) | Doc::Wrapped { faults: l } => l,
    };
    list.into_iter().map(ScenarioFault::into_fault).collect()
}
