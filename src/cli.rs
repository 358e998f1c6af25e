//! Command-line arguments and their help texts, and what they become for the modules
//! that do the work (their own settings and option types).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ServeSettings;
use crate::stack::cmd::logs::LogsRequest;
use crate::stack::cmd::up::UpOptions;
use crate::transfer::Cache;
use crate::tutor::cmd::TutorOptions;
use crate::warm::WarmOptions;

#[derive(Debug, Parser)]
#[command(
    name = "devcache",
    version,
    about = "A PyPI caching proxy for Docker dev environments (devpi-compatible URLs on port 3141), \
             and the manager of devstack's cache container",
    after_help = "Point pip at it with: pip install --index-url http://localhost:3141/root/pypi/+simple/ PACKAGE"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the cache server: pip and uv use it as their index.
    #[command(after_help = "\
Examples:
  devcache serve --upstream https://my-index.example/simple/
  DEVCACHE_UPSTREAM=http://mirror:8080/simple/ devcache serve --port 3141 --data-dir ./cache
  devcache serve --offline     # serve only what is cached, never contact the upstream")]
    Serve(ServeArgs),
    /// Print the merged configuration and where each value came from.
    Config(ServeArgs),
    /// Start the devstack's cache container and wire pip and uv in lms, studio, ... to it
    /// (none when Tutor runs the project's cache from devcache's plugin).
    #[command(after_help = "\
Examples:
  devcache up --upstream https://my-index.example/simple/
  devcache up ecommerce            # wire one more service (remembered)
  COMPOSE_PROJECT_NAME=mystack devcache up --port 3142")]
    Up(UpArgs),
    /// Unwire the consumers and remove the cache container (the cached data stays).
    #[command(
        after_help = "Examples:\n  devcache down\n  devcache down --volumes   # also delete everything cached"
    )]
    Down(DownArgs),
    /// Wire services to the cache (and remember it).
    #[command(after_help = "\
Examples:
  devcache enable lms studio
  devcache enable ecommerce
  devcache enable --locked-installs lms    # uv sync --frozen through the cache too
  devcache enable --locked-installs --file-host files.example.org lms

--locked-installs sends the hosts of the lock's file URLs (edx-platform's uv.lock) to the
cache inside the service: /etc/hosts names the cache container for them, the cache's CA
(name-constrained to those hosts; its key stays in the cache's volume) joins the system
trust store, and uv.toml sets system-certs = true. `devcache disable` undoes all of it.")]
    Enable(EnableArgs),
    /// Unwire services, giving back the pip.conf they had (and remember it).
    #[command(after_help = "Example:\n  devcache disable lms")]
    Disable(ServicesArgs),
    /// Say what runs where: the cache container (devcache's, or the one Tutor runs from the
    /// plugin), its counters, each consumer.
    #[command(
        after_help = "Examples:\n  devcache status\n  devcache status --json | jq .cache.server.hits\n  devcache status --project tutor_dev"
    )]
    Status(StatusArgs),
    /// Show the cache's logs (or a service's); -f follows them until Ctrl-C.
    #[command(after_help = "Examples:\n  devcache logs -f\n  devcache logs --tail 50 lms")]
    Logs(LogsArgs),
    /// Wire enabled services again whenever their containers start (until Ctrl-C).
    Watch(StackArgs),
    /// Fill the cache with what requirement or lock files pin, for installing offline later.
    #[command(after_help = "\
Examples:
  devcache warm -r requirements/base.txt                # into the running cache container
  devcache warm -r requirements.txt --python 3.12 --platform manylinux_2_28_x86_64
  devcache warm -r requirements.txt --data-dir ./cache --upstream https://my-index.example/simple/
  devcache warm --lock uv.lock                          # or --lock pylock.toml
  devcache warm lms studio                              # their uv.lock or requirement files")]
    Warm(WarmArgs),
    /// Write the cache to one portable file (a .tar, or .tar.zst to compress it).
    #[command(after_help = "\
Examples:
  devcache export devstack-cache.tar.zst                 # from the running cache container
  devcache export cache.tar --data-dir ~/.cache/devcache")]
    Export(TransferArgs),
    /// Fill the cache from a bundle; every file is checked, and a bad bundle changes nothing.
    #[command(after_help = "\
Examples:
  devcache import devstack-cache.tar.zst                 # into the running cache container
  devcache import cache.tar --data-dir ./cache
  devcache import team.tar.zst --pin team-offline    # pinned under that name
  devcache import old.tar --no-pin                    # evictable like any other file")]
    Import(ImportArgs),
    /// List the pin sets: files warm and import brought in, which eviction never removes.
    #[command(
        after_help = "Examples:\n  devcache pins\n  devcache pins --data-dir ~/.cache/devcache"
    )]
    Pins(DiskArgs),
    /// Drop pin sets: their files may be evicted again when the cache is over its budget.
    #[command(
        after_help = "Examples:\n  devcache unpin warm-lms\n  devcache unpin --all --data-dir ./cache"
    )]
    Unpin(UnpinArgs),
    /// Remove the least recently used unpinned files until the cache fits a budget, once.
    #[command(after_help = "\
Examples:
  devcache gc --dry-run                        # what the cache container's budget would remove
  devcache gc --max-size 10GiB                 # in the running cache container
  devcache gc --max-size 5GiB --data-dir ~/.cache/devcache")]
    Gc(GcArgs),
    /// Re-hash every cached file against its name; damaged ones are moved aside and fetched again.
    #[command(after_help = "\
Examples:
  devcache verify                          # the running cache container's volume
  devcache verify --data-dir ~/.cache/devcache

Damaged files are moved to quarantine/ in the data directory and named; the command then
exits 1, and the next request for each file fetches it again from the upstream.")]
    Verify(DiskArgs),
    /// Make the devcache image from this executable (`up` does it when needed); it is
    /// `devcache:<version>`, or the name in DEVCACHE_IMAGE.
    Image {
        /// Make it even if the image already holds this executable.
        #[arg(long)]
        force: bool,
    },
    /// Make Tutor (tutor dev, tutor local) install through the cache: a Tutor plugin devcache writes.
    #[command(
        subcommand,
        after_help = "\
Examples:
  devcache tutor enable --upstream https://my-index.example/simple/
  tutor images build openedx && tutor dev start
  devcache tutor disable"
    )]
    Tutor(TutorCommand),
    /// The local CA of locked installs in a data directory: `devcache enable --locked-installs`
    /// runs it in the cache container; a cache run with `serve --tls-port` needs it too.
    #[command(
        subcommand,
        after_help = "\
Examples:
  devcache tls issue files.example.org --data-dir ~/.cache/devcache > devcache-ca.pem
  devcache tls remove --data-dir ~/.cache/devcache"
    )]
    Tls(TlsCommand),
    /// Exit 0 when the cache answers; the container's health check.
    #[command(hide = true)]
    Health {
        #[arg(default_value = "http://127.0.0.1:3141/+status")]
        url: String,
    },
}

/// `devcache tls ...`
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make the CA (name-constrained to these hosts; its key stays in the data directory) and
    /// the server's certificate, unless they exist for exactly these hosts; print the CA's
    /// certificate, for the clients to trust.
    Issue {
        /// The file hosts of the lock's URLs, e.g. files.example.org
        #[arg(required = true)]
        hosts: Vec<String>,
        /// The cache's data directory
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Remove the CA and the server's certificate: the cache answers no file host again.
    Remove {
        /// The cache's data directory
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

/// `devcache tutor ...`
#[derive(Debug, Subcommand)]
pub enum TutorCommand {
    /// Write the plugin (the cache as the service `devcache`, pip and uv pointed at it in the
    /// openedx image and its containers) and run `tutor plugins enable devcache`.
    Enable(TutorEnableArgs),
    /// Run `tutor plugins disable devcache` and remove the plugin.
    Disable,
    /// Say whether the plugin is written and what it points at.
    Status,
}

#[derive(Debug, Clone, Args)]
pub struct TutorEnableArgs {
    /// The index the cache caches, and the one uv installs from when the cache is down
    /// [env: DEVCACHE_UPSTREAM] [default: as for `serve`]
    #[arg(long)]
    pub upstream: Option<String>,
    /// Host port the cache is published on
    #[arg(long, default_value_t = 3141)]
    pub port: u16,
    /// Address image builds and containers reach that port on [default: host.docker.internal
    /// on Docker Desktop, else the default bridge's gateway, e.g. 172.17.0.1]
    #[arg(long, value_name = "ADDRESS")]
    pub build_host: Option<String>,
    /// Configuration file, as for `serve`
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Which devstack to work on.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// The compose project (devstack's COMPOSE_PROJECT_NAME)
    #[arg(long, env = "COMPOSE_PROJECT_NAME", default_value = "devstack")]
    pub project: String,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// The index the cache container caches [env: DEVCACHE_UPSTREAM]
    /// [default: the running cache's, else the last `up`'s, else as for `serve`]
    #[arg(long)]
    pub upstream: Option<String>,
    /// Host port to publish the cache on; 0 picks a free one
    #[arg(long, default_value_t = 3141)]
    pub port: u16,
    /// The cache's disk budget, e.g. 20GiB [env: DEVCACHE_MAX_SIZE] [default: as for `serve`]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_size: Option<u64>,
    /// Configuration file, as for `serve`
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Services to wire (remembered); default: lms, studio and those enabled before
    pub services: Vec<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// A requirement file (repeatable); -r/-c includes inside it are followed
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    pub requirements: Vec<std::path::PathBuf>,
    /// A lock file, uv.lock or pylock.toml (repeatable): what it installs for the target
    #[arg(long = "lock", value_name = "FILE")]
    pub locks: Vec<std::path::PathBuf>,
    /// The Python that will install [default: 3.11, or the service's own]
    #[arg(long, value_name = "VERSION")]
    pub python: Option<String>,
    /// Wheel platform tags to fetch for (repeatable) [default: manylinux_2_35 of this machine's
    /// architecture, or the service's own]
    #[arg(long, value_name = "TAG")]
    pub platform: Vec<String>,
    /// Fill this data directory (through a cache devcache runs for the purpose)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the upstream index [default: as for `serve`]
    #[arg(long)]
    pub upstream: Option<String>,
    /// Fill the cache (devcache or devpi) at this URL instead
    #[arg(long)]
    pub url: Option<String>,
    /// Downloads at once
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// The pin set that keeps what is warmed from eviction [default: warm-<service>, or
    /// warm-<first requirement file's name>]
    #[arg(long, value_name = "SET")]
    pub pin: Option<String>,
    /// Do not pin what is warmed: it may be evicted like any other file
    #[arg(long, conflicts_with = "pin")]
    pub no_pin: bool,
    /// Configuration file, as for `serve`
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// devstack services whose own lock or requirement files to warm for (e.g. lms studio)
    pub services: Vec<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// The bundle (.tar or .tar.zst)
    pub file: PathBuf,
    #[command(flatten)]
    pub disk: DiskArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// The pin set that keeps the imported files from eviction [default: import-<bundle's file name>]
    #[arg(long, value_name = "SET")]
    pub pin: Option<String>,
    /// Do not pin the imported files: they may be evicted like any other file
    #[arg(long, conflicts_with = "pin")]
    pub no_pin: bool,
}

/// Which cache a disk command works on.
#[derive(Debug, Clone, Args)]
pub struct DiskArgs {
    /// A data directory instead of the running cache container
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UnpinArgs {
    /// Pin sets to drop, as `devcache pins` names them (e.g. warm-lms)
    pub sets: Vec<String>,
    /// Drop every pin set
    #[arg(long, conflicts_with = "sets")]
    pub all: bool,
    #[command(flatten)]
    pub disk: DiskArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// The budget, e.g. 20GiB [default: the cache's --max-size / DEVCACHE_MAX_SIZE / max_size:]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_size: Option<u64>,
    /// Only say what would be removed
    #[arg(long)]
    pub dry_run: bool,
    /// Configuration file, as for `serve`
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub disk: DiskArgs,
}

impl DiskArgs {
    /// The data directory when one is given, else the project's cache container.
    pub fn cache(&self) -> Cache {
        match &self.data_dir {
            Some(dir) => Cache::DataDir(dir.clone()),
            None => Cache::Container {
                project: self.stack.project.clone(),
            },
        }
    }
}

impl GcArgs {
    /// Where `gc` finds the configured budget when no --max-size is given.
    pub fn serve(&self) -> ServeSettings {
        ServeSettings {
            data_dir: self.disk.data_dir.clone(),
            config: self.config.clone(),
            offline: true,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also remove the data volume, and with it everything cached
    #[arg(long)]
    pub volumes: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EnableArgs {
    /// Serve the services' locked installs (`uv sync --frozen`) from the cache too
    #[arg(long)]
    pub locked_installs: bool,
    /// With --locked-installs: a file host of the lock's URLs (repeatable) [default: the hosts
    /// of the service's uv.lock, found as `warm SERVICE` finds it]
    #[arg(long, value_name = "HOST", requires = "locked_installs")]
    pub file_host: Vec<String>,
    #[command(flatten)]
    pub services: ServicesArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// devstack services, e.g. lms studio ecommerce
    #[arg(required = true)]
    pub services: Vec<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON, for scripts
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Keep streaming new lines until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<String>,
    /// A service's logs instead of the cache's (e.g. lms)
    pub service: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// Settings of the cache server. Each may also come from a `DEVCACHE_*` variable or
/// from devcache.yml; a flag wins over both.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: DEVCACHE_HOST] [default: 127.0.0.1; the devcache image sets 0.0.0.0]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [env: DEVCACHE_PORT] [default: 3141]
    #[arg(long)]
    pub port: Option<u16>,
    /// Where cached pages and files are kept [env: DEVCACHE_DATA_DIR]
    /// [default: the user's cache directory; the devcache image sets /data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The index to cache, e.g. https://my-index.example/simple/; a user and password
    /// in it go with every request to its host [env: DEVCACHE_UPSTREAM]
    /// [default: the index the local pip uses, as it says itself]
    #[arg(long)]
    pub upstream: Option<String>,
    /// Never contact the upstream; serve only what is cached [env: DEVCACHE_OFFLINE]
    #[arg(long)]
    pub offline: bool,
    /// Seconds an index page is served without asking the upstream [env: DEVCACHE_INDEX_TTL] [default: 300]
    #[arg(long, value_name = "SECS")]
    pub index_ttl: Option<u64>,
    /// Seconds the upstream has to send a page, or a file's headers, before the cached
    /// page is served or the client gets a 502 [env: DEVCACHE_UPSTREAM_TIMEOUT] [default: 10]
    #[arg(long, value_name = "SECS")]
    pub upstream_timeout: Option<u64>,
    /// Disk budget for cached files, e.g. 20GiB; beyond it the least recently used
    /// unpinned files are evicted [env: DEVCACHE_MAX_SIZE] [default: none]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_size: Option<u64>,
    /// The most of an index page read from the upstream, in MiB
    /// [env: DEVCACHE_MAX_PAGE_MIB] [default: 128]
    #[arg(long, value_name = "MIB")]
    pub max_page_mib: Option<u64>,
    /// The most of a file downloaded when neither its page nor the upstream gives its size,
    /// in MiB [env: DEVCACHE_MAX_FILE_MIB] [default: 4096]
    #[arg(long, value_name = "MIB")]
    pub max_file_mib: Option<u64>,
    /// Seconds a client has to send a request's headers; idle connections close after as
    /// long [env: DEVCACHE_CLIENT_TIMEOUT] [default: 30]
    #[arg(long, value_name = "SECS")]
    pub client_timeout: Option<u64>,
    /// Also answer locked installs' file hosts (those `devcache tls issue` made a certificate
    /// for) over TLS on this port; the cache container uses 443 [env: DEVCACHE_TLS_PORT]
    /// [default: none]
    #[arg(long, value_name = "PORT")]
    pub tls_port: Option<u16>,
    /// Seconds a stopping server (SIGTERM, Ctrl-C) gives answers and downloads under way
    /// to finish; idle and half-sent connections are closed at once
    /// [env: DEVCACHE_STOP_GRACE] [default: 8]
    #[arg(long, value_name = "SECS")]
    pub stop_grace: Option<u64>,
    /// Threads that answer connections. One costs the least CPU per request, which leaves
    /// the most to the clients on the same cores; more serve more requests a second when
    /// many clients load the cache at once [env: DEVCACHE_THREADS] [default: 1]
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Configuration file [env: DEVCACHE_CONFIG] [default: ./devcache.yml, then the user's config directory]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A size flag (`20GiB`, `500MB`, bytes), as devcache.yml and the environment write it.
fn size(raw: &str) -> Result<u64, String> {
    crate::config::parse_size(raw).map_err(|e| e.to_string())
}

// What each command's flags become for the module that does the work: nothing below
// this file sees clap.

impl From<ServeArgs> for ServeSettings {
    fn from(args: ServeArgs) -> Self {
        Self {
            host: args.host,
            port: args.port,
            data_dir: args.data_dir,
            upstream: args.upstream,
            offline: args.offline,
            index_ttl: args.index_ttl,
            upstream_timeout: args.upstream_timeout,
            max_size: args.max_size,
            max_page_mib: args.max_page_mib,
            max_file_mib: args.max_file_mib,
            client_timeout: args.client_timeout,
            tls_port: args.tls_port,
            stop_grace: args.stop_grace,
            threads: args.threads,
            config: args.config,
        }
    }
}

impl From<UpArgs> for UpOptions {
    fn from(args: UpArgs) -> Self {
        Self {
            project: args.stack.project,
            serve: ServeSettings {
                upstream: args.upstream,
                config: args.config,
                max_size: args.max_size,
                ..Default::default()
            },
            port: args.port,
            services: args.services,
        }
    }
}

impl From<TutorEnableArgs> for TutorOptions {
    fn from(args: TutorEnableArgs) -> Self {
        Self {
            serve: ServeSettings {
                upstream: args.upstream,
                config: args.config,
                ..Default::default()
            },
            port: args.port,
            host: args.build_host,
        }
    }
}

impl From<LogsArgs> for LogsRequest {
    fn from(args: LogsArgs) -> Self {
        Self {
            project: args.stack.project,
            follow: args.follow,
            tail: args.tail,
            service: args.service,
        }
    }
}

impl From<WarmArgs> for WarmOptions {
    fn from(args: WarmArgs) -> Self {
        Self {
            requirements: args.requirements,
            locks: args.locks,
            services: args.services,
            project: args.stack.project,
            python: args.python,
            platforms: args.platform,
            url: args.url,
            serve: ServeSettings {
                data_dir: args.data_dir,
                upstream: args.upstream,
                config: args.config,
                ..Default::default()
            },
            jobs: args.jobs,
            pin: args.pin,
            no_pin: args.no_pin,
        }
    }
}

impl TransferArgs {
    /// The data directory when one is given, else the project's cache container.
    pub fn cache(&self) -> Cache {
        self.disk.cache()
    }
}
