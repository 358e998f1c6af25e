//! The devstack manager: the cache container, its consumers' pip and uv
//! configuration, logs and status, all through the Docker Engine API (bollard).
//!
//! ```text
//! names.rs      devstack's names for services, containers, network, volume
//! engine.rs     connecting to the Engine, and errors that name the fix
//! image.rs      the devcache image, made from this executable (no registry needed)
//! cache.rs      the cache container: create, start, wait, remove
//! exec.rs       commands inside containers
//! files.rs      files into and out of containers (tar archives, made by the tar crate)
//! consumers.rs  finding lms, studio, ... and wiring pip.conf and uv.toml into them
//! installer_config.rs  those files: the user's own settings, pointed at the cache
//! locked.rs     locked installs: a lock's file hosts sent to the cache, its CA trusted
//! state.rs      which consumers are enabled or disabled, remembered per project
//! cmd/          the subcommands, one file per command family, each saying plainly what it did
//! ```

pub mod cache;
pub mod cmd;
pub mod consumers;
pub mod engine;
pub mod exec;
pub mod files;
pub mod image;
pub mod installer_config;
pub mod locked;
pub mod names;
pub mod state;
