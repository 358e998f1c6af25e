//! devcache: a PyPI caching proxy for Docker dev environments.
//!
//! This file only maps subcommands to the modules that do the work; clap's types stop
//! here and in cli.rs.

mod api;
mod cache;
mod cli;
mod config;
mod disk;
mod index;
mod local_file;
mod metrics;
mod server;
mod stack;
mod store;
mod tls;
mod transfer;
mod tutor;
mod upstream;
mod verify;
mod warm;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, TlsCommand, TutorCommand};
use config::{ServeConfig, process_env};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devcache: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use stack::cmd;
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            let config = ServeConfig::load(&args.into(), &process_env)?;
            serve_runtime(config.threads.value.get())?.block_on(server::run(config))
        }
        Command::Config(args) => {
            let config = ServeConfig::load(&args.into(), &process_env)?;
            print!("{}", config.describe());
            Ok(())
        }
        Command::Up(args) => block_on(cmd::up::up(args.into())),
        Command::Down(args) => block_on(cmd::down::down(&args.stack.project, args.volumes)),
        Command::Enable(args) => block_on(cmd::enable::enable(
            &args.services.stack.project,
            &args.services.services,
            args.locked_installs.then_some(args.file_host.as_slice()),
        )),
        Command::Disable(args) => {
            block_on(cmd::enable::disable(&args.stack.project, &args.services))
        }
        Command::Status(args) => block_on(cmd::status::status(&args.stack.project, args.json)),
        Command::Logs(args) => block_on(cmd::logs::logs(args.into())),
        Command::Watch(args) => block_on(cmd::watch::watch(&args.project)),
        Command::Warm(args) => block_on(warm::command(args.into())),
        Command::Export(args) => block_on(transfer::export(&args.cache(), &args.file)),
        Command::Import(args) => block_on(transfer::import(
            &args.transfer.cache(),
            &args.transfer.file,
            args.pin,
            args.no_pin,
        )),
        Command::Pins(args) => block_on(disk::pins(&args.cache())),
        Command::Unpin(args) => block_on(disk::unpin(&args.disk.cache(), &args.sets, args.all)),
        Command::Gc(args) => block_on(disk::gc(
            &args.disk.cache(),
            args.max_size,
            args.dry_run,
            args.serve(),
        )),
        Command::Verify(args) => block_on(verify::verify(&args.cache())),
        Command::Image { force } => block_on(cmd::image::image(force)),
        Command::Tutor(TutorCommand::Enable(args)) => block_on(tutor::cmd::enable(args.into())),
        Command::Tutor(TutorCommand::Disable) => tutor::cmd::disable(),
        Command::Tutor(TutorCommand::Status) => tutor::cmd::status(),
        Command::Tls(TlsCommand::Issue { hosts, data_dir }) => {
            tls::issue_command(&data_dir, &hosts)
        }
        Command::Tls(TlsCommand::Remove { data_dir }) => tls::remove_command(&data_dir),
        Command::Health { url } => block_on(cmd::health::health(&url)),
    }
}

/// The server's runtime: by default a single thread answers every connection, beside
/// tokio's blocking pool, which does the disk work (hashing and writing downloads, saves,
/// long pages); `--threads` above one gives that many workers.
///
/// devcache's clients, pip and uv resolving, run on the same cores as the cache and keep
/// them busy. With a worker per core, tokio's workers woke each other for nearly every
/// request, and those wakeups were most of the difference: on 2 cores, one thread cut
/// the cache's CPU by about a third, a cold `uv pip compile` against an upstream on
/// loopback went from 1.22x to 1.04x of going direct, and a warm one from 1.13x to 1.08x
/// of nginx. Two workers answer more requests a second under a saturating load (a page
/// at 1.2x, gzipped at 1.4x), which only a cache serving many clients at once reaches.
fn serve_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
    .enable_all()
    .build()
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(work)
}

/// Request lines go to stdout, everything else to stderr, at info unless `RUST_LOG`
/// says otherwise.
fn init_logging() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let requests = std::io::stdout.with_filter(|m| m.target() == server::ACCESS_TARGET);
    let rest = std::io::stderr.with_filter(|m| m.target() != server::ACCESS_TARGET);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .with_writer(requests.and(rest))
        .init();
}
