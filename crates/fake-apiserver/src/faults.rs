//! Fault injection: fail, delay or drop chosen requests, and run hooks when
//! they arrive.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::log::RecordedRequest;

/// A callback run synchronously when a matching request arrives.
pub type Hook = Arc<dyn Fn(&RecordedRequest) + Send + Sync>;

/// What a triggered fault does after its hook (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Handle the request normally (hook-only faults).
    Proceed,
    /// Answer a real-shaped `Status` with this code; nothing is applied.
    Respond(u16),
    /// Wait, then handle normally.
    Delay(Duration),
    /// Close the connection without answering; nothing is applied.
    Drop,
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
    /// `Respond`, `Drop` or `Proceed`.
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
            match armed.fault.action {
                FaultAction::Delay(d) => v.delay += d,
                FaultAction::Proceed => {}
                a @ (FaultAction::Respond(_) | FaultAction::Drop) => {
                    if v.action == FaultAction::Proceed {
                        v.action = a;
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
            + usize::from(self.drop);
        anyhow::ensure!(
            actions <= 1,
            "a scenario fault takes at most one of respond, delayMs, drop"
        );
        if let Some(code) = self.respond {
            f = f.respond(code);
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
    let doc: Doc = serde_yaml::from_str(text)?;
    let list = match doc {
        Doc::List(l) | Doc::Wrapped { faults: l } => l,
    };
    list.into_iter().map(ScenarioFault::into_fault).collect()
}
