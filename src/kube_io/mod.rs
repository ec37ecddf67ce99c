//! Everything that reads from the cluster: the client, paged HelmRelease
//! listing into views, and metadata-only Helm storage reads.

pub mod client;
pub mod helmreleases;
pub mod list;
pub mod proxy;
pub mod storage;

pub use client::{Clients, MAX_IN_FLIGHT, connect};
pub use helmreleases::HelmReleases;
pub use list::{ListFailure, Listed, list_helmreleases};
pub use storage::read_storage;
