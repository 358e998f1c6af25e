//! The devstack subcommands, one file per command family (as mini-redis keeps
//! `cmd/get.rs` beside `cmd/set.rs`). Each composes the pieces of `stack/` and says
//! plainly what it did; problems a user can fix come back as one-line errors.
//!
//! ```text
//! up.rs       the cache container, then pip.conf and uv.toml in every consumer
//! down.rs     consumers unwired, the container (and with --volumes the data) removed
//! enable.rs   enable and disable: the remembered choice, and the wiring it implies
//! status.rs   what runs where, gathered from the Engine and the cache's /+status
//! report.rs   the status report, as JSON for scripts or lines for people
//! logs.rs     the cache's or a service's logs
//! watch.rs    wiring consumers again whenever their containers start
//! image.rs    making the devcache image
//! health.rs   the container's health check
//! ```
//!
//! This file holds what several commands say the same way: how a wiring went, and
//! how failures of several services end a command.

pub mod down;
pub mod enable;
pub mod health;
pub mod image;
pub mod logs;
mod report;
pub mod status;
pub mod up;
pub mod watch;

use anyhow::{Result, bail};
use bollard::Docker;

use super::consumers;
use super::names::{self, Project};

/// The services named on the command line, in devstack's spelling.
fn services(words: &[String]) -> Result<Vec<String>> {
    words.iter().map(|s| names::service(s)).collect()
}

/// Wires one consumer; `Some(what it did)` when something changed.
async fn wire_one(docker: &Docker, project: &Project, service: &str) -> Result<Option<String>> {
    let consumer = consumers::find_running(docker, project, service).await?;
    let wiring = consumers::wire(docker, &consumer).await?;
    Ok(wiring.changed.then(|| {
        if wiring.saved_users_file {
            "wired (your own config is kept aside and comes back with `devcache disable`)"
                .to_string()
        } else {
            "wired".to_string()
        }
    }))
}

/// Prints each service's failure and ends the command with one error counting them.
fn fail_with(failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    for failure in &failures {
        eprintln!("devcache: {failure}");
    }
    bail!(
        "{} service(s) could not be set up; see above",
        failures.len()
    )
}
