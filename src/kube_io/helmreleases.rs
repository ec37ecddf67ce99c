//! Raw JSON access to `helm.toolkit.fluxcd.io/v2` HelmReleases.
//!
//! Objects are read as `serde_json::Value` and turned into views one by one,
//! so one malformed item never fails a whole list or re-read.

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

/// A thin handle for reading and merge-patching HelmReleases as JSON.
#[derive(Clone)]
pub struct HelmReleases {
    client: kube::Client,
    params: PatchParams,
}

impl HelmReleases {
    pub fn new(client: kube::Client, dry_run: DryRun) -> Self {
        Self {
            client,
            params: patch_params(dry_run),
        }
    }

    /// One page of the list: `limit=500`, the continue token, the selector.
    pub async fn list_page(
        &self,
        namespace: Option<&str>,
        selector: Option<&str>,
        continue_token: Option<&str>,
    ) -> Result<Value, kube::Error> {
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
        self.client.request::<Value>(request).await
    }

    /// Reads one HelmRelease (after a conflict).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Value, kube::Error> {
        let request = Request::new(collection_path(Some(namespace)))
            .get(name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<Value>(request).await
    }

    /// JSON merge patch of the object (metadata and spec).
    pub async fn patch(
        &self,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        self.merge_patch(namespace, name, None, body).await
    }

    /// JSON merge patch of the status subresource.
    pub async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        self.merge_patch(namespace, name, Some("status"), body)
            .await
    }

    /// One JSON merge patch, with this client's field manager and dry run.
    async fn merge_patch(
        &self,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        let collection = Request::new(collection_path(Some(namespace)));
        let patch = Patch::Merge(body);
        let request = match subresource {
            None => collection.patch(name, &self.params, &patch),
            Some(sub) => collection.patch_subresource(sub, name, &self.params, &patch),
        }
        .map_err(kube::Error::BuildRequest)?;
        self.client.request::<Value>(request).await
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
