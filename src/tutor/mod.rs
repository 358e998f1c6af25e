//! Tutor (`tutor dev`, `tutor local`): the plugin devcache writes into Tutor's plugins
//! root, and the commands that write and remove it.
//!
//! Tutor renders its Dockerfile and compose files from templates, and a plugin's
//! patches are the supported way into them; a pip.conf written into a running
//! container would never reach an image build or a job container. So devcache
//! writes a YAML plugin (`<plugins root>/devcache.yml`) whose patches
//! - `openedx-dockerfile-minimal` (the first stage, which every other stage and so
//!   every container of the openedx image inherits): `PIP_INDEX_URL`,
//!   `PIP_TRUSTED_HOST` and `UV_DEFAULT_INDEX` pointing at the cache, and a failover
//!   that installs from the upstream when the cache does not answer, through which
//!   Tutor's `$PIP_COMMAND` runs in every build step;
//! - `openedx-dockerfile` (the production stage, which the development and final images
//!   come from): the failover's `pip`, `pip3` and `uv` links first on PATH, for the
//!   installs lms, cms and job containers run;
//! - `local-docker-compose-services` (used by `tutor local` and, through
//!   local/docker-compose.yml, by `tutor dev`): the cache as the service `devcache`,
//!   its data under Tutor's `data/devcache`, its port published;
//! - `local-docker-compose-lms-dependencies` and `...-cms-dependencies`: lms and
//!   cms depend on it, so `tutor dev start lms` brings it up.
//!
//! Image builds run outside the project's network, so the index is addressed as the
//! published port on the Docker host: the default bridge's gateway on Linux,
//! `host.docker.internal` on Docker Desktop. Containers reach it the same way.
//!
//! ```text
//! plugin.rs   the plugin file: its settings, its patches, where Tutor looks for it
//! cmd.rs      `devcache tutor enable|disable|status`
//! ```

pub mod cmd;
pub mod plugin;
