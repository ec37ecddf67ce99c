//! Rules: which requests (method, path, Kubernetes coordinates, body, which
//! occurrence) get which [`Action`].

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_json::{Value, json};

/// Identifies a rule added with [`crate::ProxyHandle::add_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u64);

/// One request as the rules see it: the request line, the Kubernetes
/// coordinates read from the path, and the whole body.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// `""` for the core group.
    pub group: Option<String>,
    pub version: Option<String>,
    pub namespace: Option<String>,
    /// The plural resource name (`helmreleases`).
    pub resource: Option<String>,
    pub name: Option<String>,
    /// `status`, `scale`...
    pub subresource: Option<String>,
    /// `?watch=true` / `?watch=1`.
    pub watch: bool,
    pub body: bytes::Bytes,
}

impl RequestInfo {
    pub(crate) fn new(
        method: &str,
        path: &str,
        query: Option<&str>,
        body: bytes::Bytes,
    ) -> RequestInfo {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest): (Option<&str>, Option<&str>, &[&str]) = match segs.as_slice() {
            ["api", v, rest @ ..] => (Some(""), Some(*v), rest),
            ["apis", g, v, rest @ ..] => (Some(*g), Some(*v), rest),
            _ => (None, None, &[]),
        };
        // Legacy `/watch/` prefix.
        let rest = match rest {
            ["watch", tail @ ..] => tail,
            r => r,
        };
        let (namespace, tail): (Option<&str>, &[&str]) = match rest {
            // `/api/v1/namespaces/<ns>` is the Namespace object itself.
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
            r => (None, r),
        };
        let own = |s: Option<&&str>| s.map(|s| s.to_string());
        let watch = query
            .map(|q| {
                q.split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
            })
            .unwrap_or(false);
        RequestInfo {
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            group: group.map(str::to_string),
            version: version.map(str::to_string),
            namespace: namespace.map(str::to_string),
            resource: own(tail.first()),
            name: own(tail.get(1)),
            subresource: if tail.len() > 2 {
                Some(tail[2..].join("/"))
            } else {
                None
            },
            watch,
            body,
        }
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A predicate over the whole request.
pub type Predicate = Arc<dyn Fn(&RequestInfo) -> bool + Send + Sync>;

/// Which of the requests that pass a rule's matchers it acts on, counted
/// from 1 per rule over every matching request (also those an earlier rule
/// acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    /// Every matching request (the default).
    Every,
    /// Only the n-th (1-based).
    Nth(u64),
    /// The first n.
    First(u64),
    /// From the `from`-th (1-based) on, `count` of them (`None`: all the rest).
    Range { from: u64, count: Option<u64> },
}

impl Occurrence {
    /// Whether the `n`-th (1-based) match is selected.
    pub fn selects(self, n: u64) -> bool {
        match self {
            Occurrence::Every => true,
            Occurrence::Nth(k) => n == k,
            Occurrence::First(k) => n <= k,
            Occurrence::Range { from, count } => {
                n >= from && count.is_none_or(|c| n < from.saturating_add(c))
            }
        }
    }
}

/// What the proxy answers the client instead of (or after) the apiserver.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// Sent as `Retry-After: <seconds>` (and, in a `Status` body, as
    /// `details.retryAfterSeconds`).
    pub retry_after: Option<u64>,
    pub body: ReplyBody,
}

/// The body of a [`Reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// A Kubernetes `Status` (`kind: Status`, `status: Failure`) with the
    /// reason that belongs to the code (Timeout, TooManyRequests, Conflict,
    /// InternalError, ServiceUnavailable...) and the apiserver's wording;
    /// `message` overrides the wording.
    Status { message: Option<String> },
    /// `text/plain; charset=utf-8`, as the apiserver's request filters in
    /// front of the handlers answer (API Priority and Fairness' 429).
    Text(String),
    /// Any JSON document.
    Json(Value),
}

impl Reply {
    /// `code` with a `Status` body.
    pub fn status(code: u16) -> Reply {
        Reply {
            status: code,
            retry_after: None,
            body: ReplyBody::Status { message: None },
        }
    }

    /// 504 `Timeout`, what kube-apiserver answers when its request deadline
    /// beat the handler (the write may well have committed).
    pub fn timeout() -> Reply {
        Reply::status(504)
    }

    /// 429 `TooManyRequests` `Status` with `Retry-After: seconds`.
    pub fn too_many_requests(seconds: u64) -> Reply {
        Reply::status(429).retry_after(seconds)
    }

    /// 429 as API Priority and Fairness answers a rejected request: a plain
    /// text body (not a `Status`) and `Retry-After: seconds`.
    pub fn apf_rejected(seconds: u64) -> Reply {
        Reply {
            status: 429,
            retry_after: Some(seconds),
            body: ReplyBody::Text("Too many requests, please try again later.\n".to_string()),
        }
    }

    /// 409 `Conflict` ("the object has been modified").
    pub fn conflict() -> Reply {
        Reply::status(409)
    }

    /// 500 `InternalError`.
    pub fn internal_error() -> Reply {
        Reply::status(500)
    }

    pub fn retry_after(mut self, seconds: u64) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Reply {
        self.body = ReplyBody::Status {
            message: Some(message.into()),
        };
        self
    }

    pub fn plain_text(mut self, text: impl Into<String>) -> Reply {
        self.body = ReplyBody::Text(text.into());
        self
    }

    pub fn json(mut self, body: Value) -> Reply {
        self.body = ReplyBody::Json(body);
        self
    }

    /// (content type, body) for this request.
    pub(crate) fn render(&self, req: &RequestInfo) -> (&'static str, Vec<u8>) {
        match &self.body {
            ReplyBody::Text(t) => ("text/plain; charset=utf-8", t.clone().into_bytes()),
            ReplyBody::Json(v) => ("application/json", v.to_string().into_bytes()),
            ReplyBody::Status { message } => (
                "application/json",
                status_body(self.status, self.retry_after, message.as_deref(), req)
                    .to_string()
                    .into_bytes(),
            ),
        }
    }
}

/// A `Status` shaped as kube-apiserver shapes it for `code`.
fn status_body(
    code: u16,
    retry_after: Option<u64>,
    message: Option<&str>,
    req: &RequestInfo,
) -> Value {
    let group_resource = match (&req.resource, &req.group) {
        (Some(r), Some(g)) if !g.is_empty() => format!("{r}.{g}"),
        (Some(r), _) => r.clone(),
        _ => String::new(),
    };
    let name = req.name.clone().unwrap_or_default();
    let (reason, default_message) = match code {
        400 => ("BadRequest", "the server rejected our request for an unknown reason".to_string()),
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => ("Forbidden", format!("{group_resource} \"{name}\" is forbidden")),
        404 => ("NotFound", format!("{group_resource} \"{name}\" not found")),
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {group_resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        ),
        422 => ("Invalid", format!("{group_resource} \"{name}\" is invalid")),
        429 => ("TooManyRequests", "Too many requests, please try again later.".to_string()),
        500 => (
            "InternalError",
            "Internal error occurred: injected by fault-proxy".to_string(),
        ),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request".to_string()),
        504 => (
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded"
                .to_string(),
        ),
        _ => ("", format!("fault-proxy answered {code}")),
    };
    let mut details = serde_json::Map::new();
    if matches!(code, 403 | 404 | 409 | 422) {
        if !name.is_empty() {
            details.insert("name".into(), json!(name));
        }
        if let Some(g) = &req.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(r) = &req.resource {
            details.insert("kind".into(), json!(r));
        }
    }
    if let Some(s) = retry_after {
        details.insert("retryAfterSeconds".into(), json!(s));
    }
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.map(str::to_string).unwrap_or(default_message),
        "code": code,
    });
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    if !details.is_empty() {
        status["details"] = Value::Object(details);
    }
    status
}

/// What a rule does to the requests it selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward and stream the answer back (what unmatched requests get;
    /// useful to count requests, or to shadow a later rule).
    Forward,
    /// Wait, then forward.
    Delay(Duration),
    /// Forward, wait for the apiserver's whole answer (so a write has
    /// committed or been refused), then answer the client this instead —
    /// whatever the apiserver said (its status is in the log as
    /// [`crate::Exchange::upstream_status`]).
    ForwardThenRespond(Reply),
    /// Forward, wait for the apiserver's whole answer, then close the
    /// client's connection without answering.
    ForwardThenDrop,
    /// Answer this without forwarding.
    Respond(Reply),
    /// Close the client's connection without answering or forwarding.
    Drop,
    /// Keep the request, unforwarded, until the test releases it with
    /// [`crate::ProxyHandle::release`].
    Hold,
}

impl Action {
    /// `ForwardThenRespond(Reply::timeout())`.
    pub fn forward_then_timeout() -> Action {
        Action::ForwardThenRespond(Reply::timeout())
    }

    pub(crate) fn kind(&self) -> ActionKind {
        match self {
            Action::Forward => ActionKind::Forward,
            Action::Delay(_) => ActionKind::Delay,
            Action::ForwardThenRespond(_) => ActionKind::ForwardThenRespond,
            Action::ForwardThenDrop => ActionKind::ForwardThenDrop,
            Action::Respond(_) => ActionKind::Respond,
            Action::Drop => ActionKind::Drop,
            Action::Hold => ActionKind::Hold,
        }
    }
}

/// [`Action`] without its data, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Forward,
    Delay,
    ForwardThenRespond,
    ForwardThenDrop,
    Respond,
    Drop,
    Hold,
}

/// How a path (or another string) is matched.
#[derive(Debug, Clone)]
pub enum TextMatch {
    Exact(String),
    Contains(String),
    Regex(Regex),
}

impl TextMatch {
    pub fn is_match(&self, s: &str) -> bool {
        match self {
            TextMatch::Exact(e) => s == e,
            TextMatch::Contains(c) => s.contains(c.as_str()),
            TextMatch::Regex(r) => r.is_match(s),
        }
    }
}

/// `None`: any subresource or none; `Some(None)`: the main resource only;
/// `Some(Some(s))`: that subresource.
type SubresourceMatch = Option<Option<String>>;

/// Matchers (all must hold) + [`Occurrence`] + [`Action`]. Built with the
/// chained methods; a bare `Rule::new(action)` matches every request.
///
/// ```
/// use fault_proxy::{Action, Reply, Rule};
/// // Answer the 2nd status PATCH of HelmRelease apps/podinfo 409, unforwarded.
/// let rule = Rule::new(Action::Respond(Reply::conflict()))
///     .method("PATCH")
///     .resource("helmreleases")
///     .namespace("apps")
///     .name("podinfo")
///     .subresource("status")
///     .nth(2);
/// # drop(rule);
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) methods: Vec<String>,
    pub(crate) path: Vec<TextMatch>,
    pub(crate) query: Vec<TextMatch>,
    pub(crate) resource: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: SubresourceMatch,
    pub(crate) watch: Option<bool>,
    pub(crate) body: Vec<TextMatch>,
    pub(crate) predicates: Vec<Predicate>,
    pub(crate) occurrence: Occurrence,
    pub(crate) action: Action,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("methods", &self.methods)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("resource", &self.resource)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("subresource", &self.subresource)
            .field("watch", &self.watch)
            .field("body", &self.body)
            .field("predicates", &self.predicates.len())
            .field("occurrence", &self.occurrence)
            .field("action", &self.action)
            .finish()
    }
}

fn regex(re: &str) -> Regex {
    Regex::new(re).unwrap_or_else(|e| panic!("fault-proxy rule: invalid regex {re:?}: {e}"))
}

impl Rule {
    /// Matches every request, every time.
    pub fn new(action: Action) -> Rule {
        Rule {
            methods: Vec::new(),
            path: Vec::new(),
            query: Vec::new(),
            resource: None,
            namespace: None,
            name: None,
            subresource: None,
            watch: None,
            body: Vec::new(),
            predicates: Vec::new(),
            occurrence: Occurrence::Every,
            action,
        }
    }

    /// Only this method (case-insensitive); called again, any of them.
    pub fn method(mut self, method: &str) -> Rule {
        self.methods.push(method.to_ascii_uppercase());
        self
    }

    /// The path (without query) contains `s`.
    pub fn path_contains(mut self, s: &str) -> Rule {
        self.path.push(TextMatch::Contains(s.to_string()));
        self
    }

    /// The path (without query) is exactly `s`.
    pub fn path_exact(mut self, s: &str) -> Rule {
        self.path.push(TextMatch::Exact(s.to_string()));
        self
    }

    /// The path (without query) matches the regex.
    ///
    /// # Panics
    /// On an invalid regex.
    pub fn path_regex(mut self, re: &str) -> Rule {
        self.path.push(TextMatch::Regex(regex(re)));
        self
    }

    /// The raw query string contains `s` (a request without a query never matches).
    pub fn query_contains(mut self, s: &str) -> Rule {
        self.query.push(TextMatch::Contains(s.to_string()));
        self
    }

    /// The plural resource (`helmreleases`, `secrets`, `leases`...).
    pub fn resource(mut self, plural: &str) -> Rule {
        self.resource = Some(plural.to_string());
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Rule {
        self.namespace = Some(namespace.to_string());
        self
    }

    pub fn name(mut self, name: &str) -> Rule {
        self.name = Some(name.to_string());
        self
    }

    /// Only requests to this subresource (`status`).
    pub fn subresource(mut self, subresource: &str) -> Rule {
        self.subresource = Some(Some(subresource.to_string()));
        self
    }

    /// Only requests to the main resource (no subresource).
    pub fn main_resource(mut self) -> Rule {
        self.subresource = Some(None);
        self
    }

    /// Only watches (`true`) or only non-watches (`false`).
    pub fn watch(mut self, watch: bool) -> Rule {
        self.watch = Some(watch);
        self
    }

    /// The body contains `s`.
    pub fn body_contains(mut self, s: &str) -> Rule {
        self.body.push(TextMatch::Contains(s.to_string()));
        self
    }

    /// The body (as lossy UTF-8) matches the regex.
    ///
    /// # Panics
    /// On an invalid regex.
    pub fn body_regex(mut self, re: &str) -> Rule {
        self.body.push(TextMatch::Regex(regex(re)));
        self
    }

    /// Any predicate over the request (e.g. on [`RequestInfo::body_json`]).
    pub fn when(
        mut self,
        predicate: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static,
    ) -> Rule {
        self.predicates.push(Arc::new(predicate));
        self
    }

    pub fn occurrence(mut self, occurrence: Occurrence) -> Rule {
        self.occurrence = occurrence;
        self
    }

    /// Only the n-th matching request (1-based).
    pub fn nth(self, n: u64) -> Rule {
        self.occurrence(Occurrence::Nth(n))
    }

    /// The first n matching requests.
    pub fn first(self, n: u64) -> Rule {
        self.occurrence(Occurrence::First(n))
    }

    /// Every matching request (the default).
    pub fn every(self) -> Rule {
        self.occurrence(Occurrence::Every)
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether every matcher holds (the occurrence aside).
    pub fn matches(&self, req: &RequestInfo) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return false;
        }
        if !self.path.iter().all(|m| m.is_match(&req.path)) {
            return false;
        }
        if !self.query.is_empty() {
            let Some(q) = &req.query else { return false };
            if !self.query.iter().all(|m| m.is_match(q)) {
                return false;
            }
        }
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        if !eq(&self.resource, &req.resource)
            || !eq(&self.namespace, &req.namespace)
            || !eq(&self.name, &req.name)
        {
            return false;
        }
        if let Some(sub) = &self.subresource
            && *sub != req.subresource
        {
            return false;
        }
        if let Some(w) = self.watch
            && w != req.watch
        {
            return false;
        }
        if !self.body.is_empty() {
            let text = String::from_utf8_lossy(&req.body);
            if !self.body.iter().all(|m| m.is_match(&text)) {
                return false;
            }
        }
        self.predicates.iter().all(|p| p(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_coordinates() {
        let r = RequestInfo::new(
            "PATCH",
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo/status",
            Some("fieldManager=x"),
            bytes::Bytes::new(),
        );
        assert_eq!(r.group.as_deref(), Some("helm.toolkit.fluxcd.io"));
        assert_eq!(r.namespace.as_deref(), Some("apps"));
        assert_eq!(r.resource.as_deref(), Some("helmreleases"));
        assert_eq!(r.name.as_deref(), Some("podinfo"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert!(!r.watch);

        let ns = RequestInfo::new("GET", "/api/v1/namespaces/apps", None, bytes::Bytes::new());
        assert_eq!(ns.resource.as_deref(), Some("namespaces"));
        assert_eq!(ns.name.as_deref(), Some("apps"));
        assert_eq!(ns.namespace, None);

        let w = RequestInfo::new(
            "GET",
            "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
            Some("watch=true&resourceVersion=5"),
            bytes::Bytes::new(),
        );
        assert!(w.watch);
        assert_eq!(w.name, None);
    }

    #[test]
    fn occurrences() {
        assert!(Occurrence::Nth(2).selects(2) && !Occurrence::Nth(2).selects(3));
        assert!(Occurrence::First(2).selects(2) && !Occurrence::First(2).selects(3));
        let r = Occurrence::Range {
            from: 2,
            count: Some(2),
        };
        assert_eq!(
            (1..=4).map(|n| r.selects(n)).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        assert!(
            Occurrence::Range {
                from: 2,
                count: None
            }
            .selects(100)
        );
    }

    #[test]
    fn matchers() {
        let req = RequestInfo::new(
            "PATCH",
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo/status",
            None,
            bytes::Bytes::from_static(br#"{"status":{"conditions":[]}}"#),
        );
        let base = Rule::new(Action::Forward);
        assert!(
            base.clone()
                .method("patch")
                .subresource("status")
                .matches(&req)
        );
        assert!(!base.clone().main_resource().matches(&req));
        assert!(base.clone().body_contains("conditions").matches(&req));
        assert!(!base.clone().body_contains("history").matches(&req));
        assert!(
            base.clone()
                .path_regex(r"/helmreleases/[^/]+/status$")
                .matches(&req)
        );
        assert!(!base.clone().query_contains("dryRun").matches(&req));
        assert!(
            base.when(|r| r
                .body_json()
                .is_some_and(|v| v.pointer("/status/conditions").is_some()))
                .matches(&req)
        );
    }

    #[test]
    fn status_bodies() {
        let req = RequestInfo::new(
            "PATCH",
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo",
            None,
            bytes::Bytes::new(),
        );
        let (_, b) = Reply::timeout().render(&req);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["reason"], "Timeout");
        assert_eq!(v["code"], 504);
        let (_, b) = Reply::too_many_requests(3).render(&req);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["details"]["retryAfterSeconds"], 3);
        let (_, b) = Reply::conflict().render(&req);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["reason"], "Conflict");
        assert_eq!(v["details"]["name"], "podinfo");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("helmreleases.helm.toolkit.fluxcd.io \"podinfo\"")
        );
    }
}
