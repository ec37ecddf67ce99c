//! Metadata-only reads of Helm's release Secrets.
//!
//! Only for the views [`storage_needed`] names, one namespaced
//! `list_metadata` per release with `labelSelector=owner=helm,name=<release>`
//! — never a payload, never a cluster-wide Secret list. Releases are read
//! concurrently; the client's limit bounds the requests in flight.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::client::MAX_IN_FLIGHT;
use super::helmreleases::PAGE_SIZE;
use crate::decide::{ReleaseRef, StorageFact, latest_revision};
use crate::error::Error;
use crate::failure::Failure;

/// Reads the latest revision of every release, concurrently. A failed read
/// is a [`StorageFact::Unreadable`] (the HelmRelease is skipped as
/// `storage-unreadable`), never an error of the run.
pub async fn read_storage(
    client: &kube::Client,
    releases: BTreeSet<ReleaseRef>,
    deadline: Instant,
) -> HashMap<ReleaseRef, StorageFact> {
    futures::stream::iter(releases)
        .map(|release| async move {
            let read = tokio::time::timeout_at(deadline, latest(client, &release)).await;
            let fact = match read {
                Ok(Ok(fact)) => fact,
                Err(_) => {
                    tracing::warn!(
                        namespace = %release.storage_namespace,
                        release = %release.release_name,
                        error = %Failure::Deadline,
                        "Helm storage unreadable"
                    );
                    StorageFact::Unreadable(Failure::Deadline)
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        namespace = %release.storage_namespace,
                        release = %release.release_name,
                        error = %error.failure(),
                        "Helm storage unreadable"
                    );
                    StorageFact::Unreadable(error.failure())
                }
            };
            (release, fact)
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// Reads one release's latest revision (all pages of its Secrets' labels).
///
/// # Errors
/// [`Error::ReadHelmStorage`] when a page cannot be listed.
pub async fn latest(client: &kube::Client, release: &ReleaseRef) -> Result<StorageFact, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.storage_namespace);
    let mut params = ListParams::default()
        .labels(&release.label_selector())
        .limit(PAGE_SIZE);
    let mut labels = Vec::new();
    loop {
        let page =
            secrets
                .list_metadata(&params)
                .await
                .map_err(|source| Error::ReadHelmStorage {
                    namespace: release.storage_namespace.clone(),
                    release: release.release_name.clone(),
                    source: Box::new(source),
                })?;
        labels.extend(page.items.into_iter().filter_map(|s| s.metadata.labels));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(StorageFact::Latest(latest_revision(labels.iter())))
}
