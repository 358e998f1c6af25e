//! `devcache health`: the cache container's health check. The image holds no curl,
//! so the binary asks its own server, and exits non-zero when it does not answer.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long the check waits; Docker's own timeout for it is longer.
const TIMEOUT: Duration = Duration::from_secs(4);

/// `devcache health [URL]`: Ok when `url` answers with success.
pub async fn health(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    Ok(())
}
