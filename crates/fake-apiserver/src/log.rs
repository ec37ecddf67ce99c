//! The request log: one [`RecordedRequest`] per request, including the ones
//! that were faulted, denied or dropped.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What the server saw and answered for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// Arrival order, from 1.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// Authenticated user name; empty when unauthenticated.
    pub user: String,
    /// Body parsed as JSON (or YAML for apply patches) when it parses, else `None`.
    pub body: Option<serde_json::Value>,
    /// Raw body text when it is not JSON.
    pub raw_body: Option<String>,
    /// Status answered; 0 if the connection was dropped.
    pub status: u16,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete,
    /// deletecollection; "discovery" for /api, /apis, /version; "unknown" otherwise.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `dryRun=All` in the query.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// What an injected fault did to this request, when it changed what
    /// the client was told: e.g. `applied 200, answered 504`,
    /// `applied 200, dropped`, `concurrent write by other-writer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl RecordedRequest {
    /// `resource` or `resource/subresource`, as RBAC names it.
    pub fn resource_path(&self) -> Option<String> {
        self.resource.as_ref().map(|r| match &self.subresource {
            Some(s) => format!("{r}/{s}"),
            None => r.clone(),
        })
    }
}

/// Request log in memory plus an optional JSON-lines file.
#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<RecordedRequest>>,
    sink: Mutex<Option<Box<dyn Write + Send>>>,
}

impl RequestLog {
    pub fn set_sink(&self, sink: Box<dyn Write + Send>) {
        if let Ok(mut s) = self.sink.lock() {
            *s = Some(sink);
        }
    }

    pub fn push(&self, r: RecordedRequest) {
        if let Ok(mut s) = self.sink.lock()
            && let Some(w) = s.as_mut()
            && let Ok(line) = serde_json::to_string(&r)
        {
            let _ = writeln!(w, "{line}").and_then(|_| w.flush());
        }
        if let Ok(mut e) = self.entries.lock() {
            e.push(r);
        }
    }

    /// Every recorded request, in arrival order.
    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        let mut v = self.entries.lock().map(|e| e.clone()).unwrap_or_default();
        v.sort_by_key(|r| r.seq);
        v
    }

    pub fn clear(&self) {
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }
}
