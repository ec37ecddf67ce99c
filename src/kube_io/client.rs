//! The Kubernetes client: configuration the kube way, and at most
//! [`MAX_IN_FLIGHT`] requests in flight at once.

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tower::limit::ConcurrencyLimitLayer;

use crate::error::Error;

/// SPEC §5: at most 16 API requests in flight at once, whatever the number
/// of HelmReleases, namespaces or concurrent actions.
pub const MAX_IN_FLIGHT: usize = 16;

/// Loads the cluster configuration and builds a client whose every request
/// passes one shared concurrency limit.
///
/// Order: with `--context`, the kubeconfig (`KUBECONFIG` or
/// `~/.kube/config`) and that context; else an explicit `KUBECONFIG`; else
/// the in-cluster service account when running in a pod; else
/// `~/.kube/config`.
pub async fn connect(context: Option<&str>) -> Result<kube::Client, Error> {
    let config = load_config(context).await?;
    build(config)
}

/// Builds the limited client from a configuration.
pub fn build(config: kube::Config) -> Result<kube::Client, Error> {
    let builder = ClientBuilder::try_from(config).map_err(|e| Error::BuildClient(Box::new(e)))?;
    Ok(builder
        .with_layer(&ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .build())
}

async fn load_config(context: Option<&str>) -> Result<kube::Config, Error> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let boxed = |e: kube::config::KubeconfigError| Error::LoadConfig(Box::new(e));
    if context.is_some() || std::env::var_os("KUBECONFIG").is_some() {
        return kube::Config::from_kubeconfig(&options).await.map_err(boxed);
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster().map_err(|e| Error::LoadConfig(Box::new(e)));
    }
    let kubeconfig = Kubeconfig::read().map_err(boxed)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(boxed)
}
