//! The Kubernetes clients: configuration the kube way, and at most
//! [`MAX_IN_FLIGHT`] requests in flight at once across both of them.
//!
//! Two clients share one connection configuration and one concurrency
//! limit: reads keep kube's built-in retry (it re-sends a request answered
//! 429, 503 or 504), writes go through a client without it, since a 504 may
//! come from a write the server applied and a blind re-send of the same body
//! and `resourceVersion` would then meet our own write as a 409. The
//! executor's write primitive (`execute::write`) owns every retry of a write.

use std::path::Path;
use std::sync::Arc;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;

use super::proxy::{ProxyEnv, proxy_for};
use crate::error::Error;

/// SPEC §5: at most 16 API requests in flight at once, whatever the number
/// of HelmReleases, namespaces or concurrent actions.
pub const MAX_IN_FLIGHT: usize = 16;

/// The read client (kube's retry on) and the write client (retry off).
#[derive(Clone)]
pub struct Clients {
    pub read: kube::Client,
    pub write: kube::Client,
}

/// Loads the cluster configuration and builds the two clients, whose every
/// request passes one shared concurrency limit.
///
/// Order: `--kubeconfig PATH`; else, with `--context` or an explicit
/// `KUBECONFIG` (several files merged as kubectl merges them: the first
/// file wins per key), that; else the in-cluster service account when
/// running in a pod; else `~/.kube/config`. The proxy is then chosen as
/// kubectl chooses it ([`proxy_for`]).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Clients, Error> {
    let config = load_config(kubeconfig, context).await?;
    build(config)
}

/// Builds both limited clients from a configuration.
pub fn build(config: kube::Config) -> Result<Clients, Error> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let one = |config: kube::Config| -> Result<kube::Client, Error> {
        let builder =
            ClientBuilder::try_from(config).map_err(|e| Error::BuildClient(Box::new(e)))?;
        Ok(builder
            .with_layer(&GlobalConcurrencyLimitLayer::with_semaphore(slots.clone()))
            .build())
    };
    let mut write = config.clone();
    write.default_retry = false;
    Ok(Clients {
        read: one(config)?,
        write: one(write)?,
    })
}

async fn load_config(path: Option<&Path>, context: Option<&str>) -> Result<kube::Config, Error> {
    let boxed = |e: kube::config::KubeconfigError| Error::LoadConfig(Box::new(e));
    let env = ProxyEnv::from_process();
    let explicit_env = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    let kubeconfig = match path {
        Some(path) => Kubeconfig::read_from(path).map_err(boxed)?,
        None if context.is_none()
            && !explicit_env
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            let mut config =
                kube::Config::incluster().map_err(|e| Error::LoadConfig(Box::new(e)))?;
            config.proxy_url = proxy_for(&config.cluster_url, None, &env)
                .map_err(|e| Error::LoadConfig(Box::new(e)))?;
            return Ok(config);
        }
        None => Kubeconfig::read().map_err(boxed)?,
    };
    let kubeconfig_proxy = cluster_proxy_url(&kubeconfig, context);
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(boxed)?;
    config.proxy_url = proxy_for(&config.cluster_url, kubeconfig_proxy.as_deref(), &env)
        .map_err(|e| Error::LoadConfig(Box::new(e)))?;
    if config.accept_invalid_certs {
        tracing::warn!(
            server = %config.cluster_url,
            "the kubeconfig sets insecure-skip-tls-verify: the API server's certificate is not verified"
        );
    }
    Ok(config)
}

/// The `proxy-url` of the cluster the chosen (or current) context names.
fn cluster_proxy_url(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let context = context.or(kubeconfig.current_context.as_deref())?;
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .proxy_url
        .clone()
}
