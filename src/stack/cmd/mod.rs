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
use super::locked::Prepared;
use super::names::{self, Project};

/// The services named on the command line, in devstack's spelling.
fn services(words: &[String]) -> Result<Vec<String>> {
    words.iter().map(|s| names::service(s)).collect()
}

/// How wiring one consumer went.
enum Wired {
    /// Its files were written now.
    Now {
        kept_users_file: bool,
    },
    Already,
    /// It has no container (yet): skipped, not an error.
    Absent,
}

impl Wired {
    fn changed(&self) -> bool {
        matches!(self, Wired::Now { .. })
    }

    /// What happened, in words.
    fn said(&self, project: &Project, service: &str) -> String {
        match self {
            Wired::Now {
                kept_users_file: true,
            } => "wired (your own settings are kept; `devcache disable` gives back your file as it was)"
                .to_string(),
            Wired::Now { .. } => "wired".to_string(),
            Wired::Already => "already wired".to_string(),
            Wired::Absent => format!(
                "no container in project {}, skipped (start it with `make dev.up.{service}`; \
                 `devcache up` or `devcache watch` wires it then)",
                project.name()
            ),
        }
    }
}

/// Wires one consumer: a running one now, an absent one skipped; a stopped one is an
/// error that says how to start it. `locked`: the locked installs of every service
/// that has them.
async fn wire_one(
    docker: &Docker,
    project: &Project,
    service: &str,
    locked: Option<&Prepared>,
) -> Result<Wired> {
    let Some(found) = consumers::find(docker, project, service).await? else {
        return Ok(Wired::Absent);
    };
    let consumer = consumers::running(found, service)?;
    let for_service = locked.and_then(|l| l.for_service(service));
    let wiring = consumers::wire(docker, &consumer, for_service.as_ref()).await?;
    Ok(if wiring.changed {
        Wired::Now {
            kept_users_file: wiring.saved_users_file,
        }
    } else {
        Wired::Already
    })
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
