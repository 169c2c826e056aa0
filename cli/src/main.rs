//! The `bittern` command: a thin layer over the bittern crates. It parses
//! arguments (clap), starts the logger (env_logger), renders progress
//! (indicatif) and maps errors to the exit codes in [`exit`].

mod args;
mod create;
mod daemon;
mod dht;
mod exit;
mod glob;
mod heap;
mod info;
mod load;
mod progress;
mod remote;
mod run;
mod signals;
mod swarm;
mod tracker;
mod units;
mod verify;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Code;

fn init_logger(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .target(env_logger::Target::Pipe(Box::new(progress::LogWriter)))
        .format_timestamp_millis()
        .init();
}

fn dispatch(cli: &Cli) -> anyhow::Result<Code> {
    let quiet = cli.quiet;
    match &cli.command {
        Command::Create(a) => create::run(a, quiet),
        Command::Info(a) => info::run(a),
        Command::Verify(a) => verify::run(a, quiet),
        Command::Download(a) => run::download(a, &signals::install()?),
        Command::Seed(a) => run::seed(a, &signals::install()?),
        Command::Tracker(a) => tracker::run(a, &signals::install()?),
        Command::Swarm(a) => swarm::run(a, &signals::install()?),
        Command::Daemon(a) => daemon::run(a, &signals::install()?),
        Command::Dht(a) => dht::run(a, &signals::install()?),
        Command::Remote(a) => remote::run(a),
    }
}

fn main() {
    heap::configure();
    let cli = Cli::parse();
    init_logger(cli.quiet, cli.verbose);
    // Lets verification hash straight from the files' maps: a file cut by
    // another program mid-hash becomes an error instead of killing us.
    // Without it, storage reads with pread (same results, more CPU).
    if let Err(e) = bittern_storage::install_sigbus_guard() {
        log::debug!("no SIGBUS guard ({e}); hashing with positioned reads");
    }
    progress::configure(cli.quiet, cli.status_interval);
    let code = match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bittern: error: {e:#}");
            exit::code_of(&e)
        }
    };
    std::process::exit(code as i32);
}
