//! Command-line arguments and their help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "devcache",
    version,
    about = "A PyPI caching proxy for Docker dev environments (devpi-compatible URLs on port 3141)",
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
}

/// Settings of the cache server. Each may also come from a `DEVCACHE_*` variable or
/// from devcache.yml; a flag wins over both.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: DEVCACHE_HOST] [default: 0.0.0.0 in a container, else 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [env: DEVCACHE_PORT] [default: 3141]
    #[arg(long)]
    pub port: Option<u16>,
    /// Where cached pages and files are kept [env: DEVCACHE_DATA_DIR]
    /// [default: /data in a container, else the user's cache directory]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The index to cache, e.g. https://my-index.example/simple/ [env: DEVCACHE_UPSTREAM]
    /// [default: the index pip is configured with]
    #[arg(long)]
    pub upstream: Option<String>,
    /// Never contact the upstream; serve only what is cached [env: DEVCACHE_OFFLINE]
    #[arg(long)]
    pub offline: bool,
    /// Seconds an index page is served without asking the upstream [env: DEVCACHE_INDEX_TTL] [default: 300]
    #[arg(long, value_name = "SECS")]
    pub index_ttl: Option<u64>,
    /// Seconds to wait for the upstream's index pages before serving a stale copy
    /// [env: DEVCACHE_UPSTREAM_TIMEOUT] [default: 10]
    #[arg(long, value_name = "SECS")]
    pub upstream_timeout: Option<u64>,
    /// Configuration file [env: DEVCACHE_CONFIG] [default: ./devcache.yml, then the user's config directory]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
