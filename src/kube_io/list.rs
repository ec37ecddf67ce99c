//! Paged HelmRelease listing into views, and why a list failed.
//!
//! Each scope (all namespaces, or each `-n` namespace) is listed in pages of
//! [`PAGE_SIZE`](super::helmreleases::PAGE_SIZE) with the continue token until
//! the server returns an empty one. Each item is turned into a view on its
//! own: a malformed item becomes a [`Candidate::Malformed`], never a failed
//! list. Items the caller's filter does not keep (a run drops those decided
//! `ready`, [`crate::plan::worth_keeping`]) are counted and dropped right
//! away, so memory grows with the kept HelmReleases, not with the cluster.
//! The filter is handed in: this module knows nothing of the decision.

use std::fmt;

use serde_json::Value;

use super::helmreleases::HelmReleases;
use crate::blocks::Dependents;
use crate::error::{Error, ListScope};
use crate::model::Reason;
use crate::view::{Candidate, HelmReleaseView};

/// Which listed views to keep; the rest are counted and dropped.
pub type Keep<'a> = &'a dyn Fn(&HelmReleaseView) -> bool;

/// What listing every scope produced.
#[derive(Debug, Default)]
pub struct Listed {
    /// Every item read, healthy and malformed ones included.
    pub scanned: usize,
    /// The items the filter kept, and every malformed one.
    pub candidates: Vec<Candidate>,
    /// The `spec.dependsOn` entries of every item, healthy ones included.
    pub dependents: Dependents,
}

impl Listed {
    /// Adds one page's items. Returns `false` when the page has no `items`
    /// list.
    pub fn add_page(&mut self, page: &Value, keep: Keep<'_>) -> bool {
        let Some(items) = page.get("items").and_then(Value::as_array) else {
            return page.get("items").is_some_and(Value::is_null);
        };
        for item in items {
            self.scanned += 1;
            self.dependents.add_item(item);
            match HelmReleaseView::from_json(item) {
                Ok(view) => {
                    if keep(&view) {
                        self.candidates.push(Candidate::View(view));
                    }
                }
                Err(malformed) => {
                    tracing::warn!(
                        namespace = malformed.namespace.as_deref().unwrap_or_default(),
                        name = malformed.name.as_deref().unwrap_or_default(),
                        reason = %Reason::Malformed,
                        "{malformed}"
                    );
                    self.candidates.push(Candidate::Malformed(malformed));
                }
            }
        }
        true
    }
}

/// The continue token of a list page; `None` when it is the last page.
pub fn continue_token(page: &Value) -> Option<&str> {
    page.pointer("/metadata/continue")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// Lists every HelmRelease in scope (`namespaces`, or all when empty), page
/// by page, with `selector`, into `listed` (which keeps what was read when a
/// later page fails, for the report), keeping the views `keep` keeps.
///
/// # Errors
/// The first failed page ([`Error::ListHelmReleases`]) or a page that is not
/// a list ([`Error::ListNotAList`]): the plan would be incomplete.
pub async fn list_helmreleases(
    api: &HelmReleases,
    namespaces: &[String],
    selector: Option<&str>,
    keep: Keep<'_>,
    listed: &mut Listed,
) -> Result<(), Error> {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    for namespace in scopes {
        let scope = match namespace {
            Some(ns) => ListScope::Namespace(ns.to_owned()),
            None => ListScope::AllNamespaces,
        };
        let mut token: Option<String> = None;
        loop {
            let page = api
                .list_page(namespace, selector, token.as_deref())
                .await
                .map_err(|source| Error::ListHelmReleases {
                    scope: scope.clone(),
                    source: Box::new(source),
                })?;
            if !listed.add_page(&page, keep) {
                return Err(Error::ListNotAList { scope });
            }
            token = continue_token(&page).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(())
}

/// Why HelmReleases could not be listed (SPEC §7, exit 4), and what to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFailure {
    /// No cluster configuration could be loaded.
    NoConfig,
    /// The API server could not be reached (connection, TLS, DNS).
    Unreachable,
    /// 401: the credentials were refused.
    Unauthorised,
    /// 403: RBAC does not allow listing HelmReleases.
    Forbidden,
    /// No answer before `--timeout`, or the server timed out.
    Timeout,
    /// 404: the HelmRelease CRD is missing or does not serve `v2`.
    NotServed,
    /// Any other answer.
    Other,
}

impl ListFailure {
    /// Classifies the error that ended listing.
    pub fn of(error: &Error) -> ListFailure {
        match error {
            Error::LoadConfig(_) => ListFailure::NoConfig,
            Error::ListTimedOut { .. } => ListFailure::Timeout,
            Error::ListNotAList { .. } => ListFailure::NotServed,
            _ => match error.kube_source() {
                Some(kube::Error::Api(status)) => match status.code {
                    401 => ListFailure::Unauthorised,
                    403 => ListFailure::Forbidden,
                    404 => ListFailure::NotServed,
                    408 | 504 => ListFailure::Timeout,
                    _ => ListFailure::Other,
                },
                Some(
                    kube::Error::HyperError(_)
                    | kube::Error::Service(_)
                    | kube::Error::RustlsTls(_),
                ) => ListFailure::Unreachable,
                _ => ListFailure::Other,
            },
        }
    }

    /// The short word for the report and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFailure::NoConfig => "no-config",
            ListFailure::Unreachable => "unreachable",
            ListFailure::Unauthorised => "unauthorised",
            ListFailure::Forbidden => "forbidden",
            ListFailure::Timeout => "timeout",
            ListFailure::NotServed => "not-served",
            ListFailure::Other => "error",
        }
    }

    /// What the operator should check.
    pub fn hint(self) -> &'static str {
        match self {
            ListFailure::NoConfig => {
                "check KUBECONFIG, ~/.kube/config and --context, or the pod's service account token"
            }
            ListFailure::Unreachable => {
                "check the API server address and CA of the current context, and that the server is up and reachable"
            }
            ListFailure::Unauthorised => {
                "check the credentials of the current context or service account (expired token or certificate?)"
            }
            ListFailure::Forbidden => {
                "check that the service account is bound to the stuck-hr-recovery ClusterRole (rbac/): helmreleases get, list, patch"
            }
            ListFailure::Timeout => "check the API server's load and latency, or raise --timeout",
            ListFailure::NotServed => {
                "check that Flux's HelmRelease CRD is installed and serves helm.toolkit.fluxcd.io/v2 (kubectl api-resources --api-group=helm.toolkit.fluxcd.io)"
            }
            ListFailure::Other => "check the API server's logs and the error above",
        }
    }
}

impl fmt::Display for ListFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::annotations;
    use crate::plan::worth_keeping;
    use chrono::Utc;
    use serde_json::json;

    fn add(listed: &mut Listed, page: &Value) -> bool {
        listed.add_page(page, &worth_keeping(Utc::now(), &Config::default()))
    }

    fn item(name: &str, ready: &str) -> Value {
        json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"namespace": "apps", "name": name, "resourceVersion": "7", "generation": 1},
            "spec": {},
            "status": {"conditions": [{
                "type": "Ready", "status": ready, "reason": "Progressing",
                "lastTransitionTime": "2020-01-01T00:00:00Z"
            }]}
        })
    }

    #[test]
    fn one_malformed_item_is_a_candidate_not_a_failed_page() {
        let mut bad = item("bad", "Unknown");
        bad["status"]["conditions"] = json!("not a list");
        let page = json!({"items": [item("ok", "Unknown"), bad, item("healthy", "True")]});
        let mut listed = Listed::default();
        assert!(add(&mut listed, &page));
        assert_eq!(listed.scanned, 3);
        assert_eq!(listed.candidates.len(), 2, "ready dropped, others kept");
        assert!(matches!(&listed.candidates[0], Candidate::View(v) if v.name == "ok"));
        assert!(
            matches!(&listed.candidates[1], Candidate::Malformed(m) if m.name.as_deref() == Some("bad"))
        );
    }

    #[test]
    fn ready_items_with_our_marker_are_kept_for_repair() {
        let mut marked = item("marked", "True");
        marked["metadata"]["annotations"] =
            json!({annotations::SUSPENDED_AT: "2020-01-01T00:00:00Z"});
        let mut listed = Listed::default();
        assert!(add(&mut listed, &json!({"items": [marked]})));
        assert_eq!(listed.candidates.len(), 1);
    }

    #[test]
    fn a_page_without_items_is_not_a_list() {
        let mut listed = Listed::default();
        assert!(!add(&mut listed, &json!({"kind": "Status"})));
        assert!(add(&mut listed, &json!({"items": null})));
    }

    #[test]
    fn continue_token_ends_on_empty() {
        assert_eq!(
            continue_token(&json!({"metadata": {"continue": "abc"}})),
            Some("abc")
        );
        assert_eq!(continue_token(&json!({"metadata": {"continue": ""}})), None);
        assert_eq!(continue_token(&json!({"metadata": {}})), None);
    }
}
