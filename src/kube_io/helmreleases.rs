//! Raw JSON access to `helm.toolkit.fluxcd.io/v2` HelmReleases.
//!
//! Objects are read as `serde_json::Value` and turned into views one by one,
//! so one malformed item never fails a whole list or re-read.

use std::time::Duration;

use http_body_util::BodyExt;
use kube::core::Request;
use kube::core::params::{GetParams, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::model::{DryRun, FIELD_MANAGER, api};

/// Items per list page (SPEC §9).
pub const PAGE_SIZE: u32 = 500;

/// The URL path of the HelmRelease collection, cluster-wide or in one namespace.
pub fn collection_path(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(
            "/apis/{}/{}/namespaces/{ns}/{}",
            api::GROUP,
            api::VERSION,
            api::PLURAL
        ),
        None => format!("/apis/{}/{}/{}", api::GROUP, api::VERSION, api::PLURAL),
    }
}

/// The `PatchParams` of every write: our field manager, and `dryRun=All`
/// for a server dry run.
pub fn patch_params(dry_run: DryRun) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        dry_run: dry_run == DryRun::Server,
        ..PatchParams::default()
    }
}

/// A write the server did not confirm: kube's error, and how long the
/// server asked us to wait (`Retry-After` header, else
/// `details.retryAfterSeconds`).
#[derive(Debug)]
pub struct Unconfirmed {
    pub error: kube::Error,
    pub retry_after: Option<Duration>,
}

impl From<kube::Error> for Unconfirmed {
    fn from(error: kube::Error) -> Self {
        Unconfirmed {
            error,
            retry_after: None,
        }
    }
}

/// Which part of the object a write patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `metadata` and `spec`.
    Object,
    /// The status subresource.
    Status,
}

/// A thin handle for reading and merge-patching HelmReleases as JSON.
/// Reads go through `client`, writes through `writer` (without kube's
/// retry, see [`super::client`]).
#[derive(Clone)]
pub struct HelmReleases {
    client: kube::Client,
    writer: kube::Client,
    params: PatchParams,
}

impl HelmReleases {
    pub fn new(client: kube::Client, dry_run: DryRun) -> Self {
        Self {
            writer: client.clone(),
            client,
            params: patch_params(dry_run),
        }
    }

    /// Sends writes through `writer`.
    #[must_use]
    pub fn writing_with(mut self, writer: kube::Client) -> Self {
        self.writer = writer;
        self
    }

    /// One page of the list as text (decoded by the caller, item by item):
    /// `limit=500`, the continue token, the selector.
    pub async fn list_page(
        &self,
        namespace: Option<&str>,
        selector: Option<&str>,
        continue_token: Option<&str>,
    ) -> Result<String, kube::Error> {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        if let Some(token) = continue_token {
            params = params.continue_token(token);
        }
        let request = Request::new(collection_path(namespace))
            .list(&params)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await
    }

    /// Reads one HelmRelease (after a conflict).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Value, kube::Error> {
        let request = Request::new(collection_path(Some(namespace)))
            .get(name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<Value>(request).await
    }

    /// One JSON merge patch of `part`, with this handle's field manager and
    /// dry run, sent once (no retry) through the write client.
    pub async fn write(
        &self,
        namespace: &str,
        name: &str,
        part: Part,
        body: &Value,
    ) -> Result<Value, Unconfirmed> {
        let collection = Request::new(collection_path(Some(namespace)));
        let patch = Patch::Merge(body);
        let request = match part {
            Part::Object => collection.patch(name, &self.params, &patch),
            Part::Status => collection.patch_subresource("status", name, &self.params, &patch),
        }
        .map_err(kube::Error::BuildRequest)?;
        let response = self
            .writer
            .send(request.map(kube::client::Body::from))
            .await?;
        let code = response.status();
        let header = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.into_body().collect().await?.to_bytes();
        if code.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Unconfirmed::from(kube::Error::SerdeError(e)));
        }
        let text = String::from_utf8_lossy(&bytes);
        let status = serde_json::from_str::<kube::core::Status>(&text).unwrap_or_else(|_| {
            kube::core::Status::failure(text.trim(), "Failed to parse error data")
                .with_code(code.as_u16())
        });
        let details = status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)));
        Err(Unconfirmed {
            retry_after: header.or(details),
            error: kube::Error::Api(Box::new(status)),
        })
    }
}

/// `metadata.resourceVersion` of an object the server returned.
pub fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cover_all_namespaces_and_one() {
        assert_eq!(
            collection_path(None),
            "/apis/helm.toolkit.fluxcd.io/v2/helmreleases"
        );
        assert_eq!(
            collection_path(Some("apps")),
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases"
        );
    }

    #[test]
    fn every_write_carries_the_field_manager() {
        for mode in [DryRun::None, DryRun::Server] {
            let params = patch_params(mode);
            assert_eq!(params.field_manager.as_deref(), Some(FIELD_MANAGER));
            assert_eq!(params.dry_run, mode == DryRun::Server);
        }
    }
}
