//! `devcache image`: makes the devcache image from this executable, so `up` needs
//! no registry; `--force` makes it again even when it is current.

use anyhow::Result;

use crate::stack::engine;
use crate::stack::image::{self, Made};

/// `devcache image [--force]`
pub async fn image(force: bool) -> Result<()> {
    let docker = engine::connect().await?;
    match image::ensure(&docker, force).await? {
        Made::Present => println!("image {}: already holds this devcache", image::tag()),
        Made::Built(why) => println!("image {}: built from this devcache: {why}", image::tag()),
    }
    Ok(())
}
