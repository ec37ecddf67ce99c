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

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::helmreleases::HelmReleases;
use crate::blocks::Dependents;
use crate::error::{Error, ListScope};
use crate::model::Reason;
use crate::view::decode::dependencies;
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

/// One list answer: its continue token and the text of each item, not yet
/// decoded (the items borrow from the answer's text).
#[derive(Debug, serde::Deserialize)]
pub struct Page<'a> {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(borrow, default)]
    items: Items<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PageMeta {
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
}

/// `items` of a list answer.
#[derive(Debug, Default)]
enum Items<'a> {
    /// No `items` at all: not a list.
    #[default]
    Missing,
    /// `items: null`: an empty list.
    Null,
    List(Vec<&'a RawValue>),
    /// `items` of another JSON type: not a list.
    Wrong,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Items<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ItemsVisitor<'a> {
            type Value = Items<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of objects")
            }
            fn visit_unit<E>(self) -> Result<Items<'a>, E> {
                Ok(Items::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Items<'a>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<&'a RawValue>()? {
                    items.push(item);
                }
                Ok(Items::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Items<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Items::Wrong)
            }
            fn visit_str<E>(self, _: &str) -> Result<Items<'a>, E> {
                Ok(Items::Wrong)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Items<'a>, E> {
                Ok(Items::Wrong)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Items<'a>, E> {
                Ok(Items::Wrong)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Items<'a>, E> {
                Ok(Items::Wrong)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Items<'a>, E> {
                Ok(Items::Wrong)
            }
        }
        deserializer.deserialize_any(ItemsVisitor(std::marker::PhantomData))
    }
}

impl<'a> Page<'a> {
    /// Splits the text of a list answer into its items (a scan, no
    /// decoding of the items).
    ///
    /// # Errors
    /// The text is not JSON, or not an object.
    pub fn parse(text: &'a str) -> Result<Page<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The continue token; `None` on the last page.
    pub fn continue_token(&self) -> Option<&str> {
        self.metadata.continue_.as_deref().filter(|t| !t.is_empty())
    }
}

impl Listed {
    /// Decodes one page's items into views, keeping those `keep` keeps (and
    /// every malformed one). Returns `false` when the page has no `items`
    /// list.
    pub fn add_page(&mut self, page: &Page<'_>, keep: Keep<'_>) -> bool {
        let items = match &page.items {
            Items::List(items) => items.as_slice(),
            Items::Null => &[],
            Items::Missing | Items::Wrong => return false,
        };
        for item in items {
            self.scanned += 1;
            let (view, decoded) = HelmReleaseView::from_text(item.get());
            if let Some(item) = dependencies(&decoded) {
                for (dependency_ns, dependency) in &item.on {
                    self.dependents
                        .add(item.namespace, item.name, dependency_ns, dependency);
                }
            }
            match view {
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

    /// [`Listed::add_page`] for the text of a whole list answer; `false`
    /// when it is not JSON or has no `items` list.
    pub fn add_text(&mut self, text: &str, keep: Keep<'_>) -> bool {
        Page::parse(text).is_ok_and(|page| self.add_page(&page, keep))
    }
}

/// One list request in flight on its own task, so the next page downloads
/// while this one is decoded; dropped unfinished (a failed page, the
/// deadline), it is aborted.
struct Fetch(tokio::task::JoinHandle<Result<String, kube::Error>>);

impl Fetch {
    fn start(
        api: &HelmReleases,
        namespace: Option<&str>,
        selector: Option<&str>,
        token: Option<&str>,
    ) -> Fetch {
        let api = api.clone();
        let (namespace, selector, token) = (
            namespace.map(str::to_owned),
            selector.map(str::to_owned),
            token.map(str::to_owned),
        );
        Fetch(tokio::spawn(async move {
            api.list_page(namespace.as_deref(), selector.as_deref(), token.as_deref())
                .await
        }))
    }

    async fn text(mut self) -> Result<String, kube::Error> {
        match (&mut self.0).await {
            Ok(answer) => answer,
            Err(join) => Err(kube::Error::Service(Box::new(join))),
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lists every HelmRelease in scope (`namespaces`, or all when empty), page
/// by page, with `selector`, into `listed` (which keeps what was read when a
/// later page fails, for the report), keeping the views `keep` keeps. The
/// next page is requested as soon as a page's continue token is known, and
/// downloads while that page is decoded.
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
        let failed = |source: kube::Error| Error::ListHelmReleases {
            scope: scope.clone(),
            source: Box::new(source),
        };
        let mut next = Some(Fetch::start(api, namespace, selector, None));
        while let Some(fetch) = next.take() {
            let text = fetch.text().await.map_err(failed)?;
            let page = Page::parse(&text).map_err(|e| failed(kube::Error::SerdeError(e)))?;
            next = page
                .continue_token()
                .map(|token| Fetch::start(api, namespace, selector, Some(token)));
            if !listed.add_page(&page, keep) {
                return Err(Error::ListNotAList { scope });
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
    use serde_json::{Value, json};

    fn add(listed: &mut Listed, page: &Value) -> bool {
        listed.add_text(
            &page.to_string(),
            &worth_keeping(Utc::now(), &Config::default()),
        )
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
        let token = |page: Value| {
            let text = page.to_string();
            Page::parse(&text)
                .ok()
                .and_then(|p| p.continue_token().map(str::to_owned))
        };
        assert_eq!(
            token(json!({"metadata": {"continue": "abc"}, "items": []})),
            Some("abc".to_owned())
        );
        assert_eq!(token(json!({"metadata": {"continue": ""}})), None);
        assert_eq!(token(json!({"metadata": {}})), None);
    }

    #[test]
    fn spec_values_and_other_unread_fields_are_skipped_and_depends_on_kept() {
        let mut hr = item("web", "Unknown");
        hr["spec"]["values"] = json!({"huge": ["a", {"b": 1.5}], "x": null});
        hr["spec"]["dependsOn"] = json!([{"name": "db"}, {"name": ""}, "odd"]);
        hr["status"]["history"] =
            json!([{"version": 2, "status": "deployed", "digest": "sha256:x"}]);
        let mut listed = Listed::default();
        assert!(add(&mut listed, &json!({"items": [hr]})));
        assert!(
            matches!(&listed.candidates[0], Candidate::View(v) if v.history[0].version == Some(2))
        );
        assert_eq!(listed.dependents.blocks("apps", "db"), ["apps/web"]);
    }

    #[test]
    fn an_item_serde_cannot_read_names_the_spot() {
        let text = r#"{"items": [{"metadata": {"name": "x", "namespace": "a"}, "spec": {"suspend": true, "suspend": false}}]}"#;
        let mut listed = Listed::default();
        assert!(listed.add_text(text, &|_: &HelmReleaseView| true));
        match &listed.candidates[..] {
            [Candidate::Malformed(m)] => {
                assert!(m.problem.starts_with("spec"), "{}", m.problem);
                assert!(
                    m.problem.contains("duplicate field `suspend`"),
                    "{}",
                    m.problem
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
