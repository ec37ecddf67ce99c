//! The one error type of the library. Each variant names the step that
//! failed and the object it failed on; the cause is kept as `#[source]` and
//! never repeated in the message, so `{:#}` (anyhow) or a source walk prints
//! "step: cause: cause".

use std::fmt;

use crate::failure::Failure;

/// `<namespace>/<name>` of the HelmRelease a step was working on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl ObjectName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which HelmReleases a list covered: every namespace, or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    AllNamespaces,
    Namespace(String),
}

impl fmt::Display for ListScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListScope::AllNamespaces => f.write_str("all namespaces"),
            ListScope::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// Every way a step of a run can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable cluster configuration (in-cluster service account,
    /// `KUBECONFIG`, `~/.kube/config`, `--context`).
    #[error("load cluster configuration")]
    LoadConfig(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The configuration was found but no client could be built from it.
    #[error("build Kubernetes client")]
    BuildClient(#[source] Box<kube::Error>),
    /// Listing HelmReleases failed (one page of one scope).
    #[error("list HelmReleases in {scope}")]
    ListHelmReleases {
        scope: ListScope,
        #[source]
        source: Box<kube::Error>,
    },
    /// The list did not finish before the run's deadline.
    #[error("list HelmReleases in {scope}: {}", Failure::DEADLINE)]
    ListTimedOut { scope: ListScope },
    /// A list page was not a list (no `items` array).
    #[error("list HelmReleases in {scope}: the answer is not a list")]
    ListNotAList { scope: ListScope },
    /// The metadata-only list of Helm's release Secrets failed.
    #[error("read Helm storage of release {release} in namespace {namespace}")]
    ReadHelmStorage {
        namespace: String,
        release: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Re-reading one HelmRelease after a conflict failed.
    #[error("re-read HelmRelease {object}")]
    ReadHelmRelease {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// Branch B step 1: the `auto-corrected-at` annotation.
    #[error("patch annotation of HelmRelease {object}")]
    PatchAnnotation {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// Branch B step 2: the status subresource.
    #[error("patch status of HelmRelease {object}")]
    PatchStatus {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// Branch B step 3: putting the annotation back after a failed status patch.
    #[error("revert annotation of HelmRelease {object}")]
    RevertAnnotation {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// Branch A step 1: `spec.suspend: true` plus our marker.
    #[error("suspend HelmRelease {object}")]
    Suspend {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// Branch A step 3, or the `interrupted-toggle` repair.
    #[error("resume HelmRelease {object}")]
    Resume {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// The `stale-marker` repair.
    #[error("clear suspend marker of HelmRelease {object}")]
    ClearMarker {
        object: ObjectName,
        #[source]
        source: Box<kube::Error>,
    },
    /// An Event could not be published (never changes an action's result).
    #[error("publish Event {reason} on HelmRelease {object}")]
    PublishEvent {
        object: ObjectName,
        reason: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    /// The Kubernetes API error behind this one, if any.
    pub fn kube_source(&self) -> Option<&kube::Error> {
        match self {
            Error::BuildClient(source)
            | Error::ListHelmReleases { source, .. }
            | Error::ReadHelmStorage { source, .. }
            | Error::ReadHelmRelease { source, .. }
            | Error::PatchAnnotation { source, .. }
            | Error::PatchStatus { source, .. }
            | Error::RevertAnnotation { source, .. }
            | Error::Suspend { source, .. }
            | Error::Resume { source, .. }
            | Error::ClearMarker { source, .. }
            | Error::PublishEvent { source, .. } => Some(source.as_ref()),
            Error::LoadConfig(_) | Error::ListTimedOut { .. } | Error::ListNotAList { .. } => None,
        }
    }

    /// The step, then every cause, joined by `: ` — the form used in the
    /// report's `error` field and in log lines. An API answer is shown as
    /// its message and `(code reason)`; a cause whose text is already shown
    /// is not repeated.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let api = cause
                .downcast_ref::<kube::Error>()
                .or_else(|| cause.downcast_ref::<Box<kube::Error>>().map(AsRef::as_ref));
            if let Some(kube::Error::Api(status)) = api {
                out.push_str(&format!(
                    ": {} ({} {})",
                    status.message, status.code, status.reason
                ));
                break;
            }
            let text = cause.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = cause.source();
        }
        out
    }

    /// This error as a failure cause ([`Failure::Step`]), for the report,
    /// Events and logs.
    pub fn failure(&self) -> Failure {
        Failure::Step(self.chain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "nope".into(),
            reason: "Conflict".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn message_names_step_and_object_but_not_cause() {
        let err = Error::PatchStatus {
            object: ObjectName::new("apps", "web"),
            source: Box::new(api_error(500)),
        };
        assert_eq!(err.to_string(), "patch status of HelmRelease apps/web");
        assert!(
            err.chain()
                .starts_with("patch status of HelmRelease apps/web: ")
        );
        assert_eq!(
            err.chain(),
            "patch status of HelmRelease apps/web: nope (500 Conflict)"
        );
    }
}
