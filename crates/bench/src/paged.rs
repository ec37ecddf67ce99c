//! The bare paged GET (issue 21): what listing every HelmRelease costs at
//! the least — one keep-alive HTTPS client (kube's, as the product's), pages
//! of 500 with the continue token, each answer read whole and dropped. The
//! product's `--dry-run` is measured against it on the same cluster.

use anyhow::{Context, Result};
use kube::core::Request;
use kube::core::params::ListParams;

/// First argument that turns the bench binary into the bare paged GET.
pub const PAGED_GET: &str = "__paged_get";

/// Lists every HelmRelease page by page; prints `items=<n>`.
pub fn main() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let items = runtime.block_on(list())?;
    println!("items={items}");
    Ok(())
}

async fn list() -> Result<usize> {
    let client = kube::Client::try_default()
        .await
        .context("building the client from KUBECONFIG")?;
    let mut token: Option<String> = None;
    let mut items = 0;
    loop {
        let mut params = ListParams::default().limit(500);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let request = Request::new("/apis/helm.toolkit.fluxcd.io/v2/helmreleases")
            .list(&params)
            .context("building the request")?;
        let text = client.request_text(request).await.context("listing")?;
        // Only what paging needs: the item count (a cheap scan for the
        // items' `"apiVersion"` keys would do too) and the continue token.
        items += text.matches("\"kind\":\"HelmRelease\"").count();
        token = continue_token(&text);
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// The `metadata.continue` of a list answer, found as text (a real API
/// server writes `metadata` first, the fake one last).
fn continue_token(text: &str) -> Option<String> {
    const KEY: &str = "\"continue\":\"";
    let at = text.rfind(KEY)? + KEY.len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_owned()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::continue_token;

    #[test]
    fn the_token_is_read_wherever_metadata_sits() {
        assert_eq!(
            continue_token(r#"{"items":[],"metadata":{"continue":"abc"}}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            continue_token(r#"{"metadata":{"continue":""},"items":[]}"#),
            None
        );
        assert_eq!(continue_token(r#"{"items":[]}"#), None);
    }
}
