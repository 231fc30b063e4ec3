//! The `joulebench` command line. It parses arguments, opens devices, and hands
//! data from one stage to the next (plan → sweep → records → analysis); it holds
//! no measurement or kernel logic of its own.

mod args;
mod compare;
mod devices;
mod error;
mod log;
mod merge;
mod model;
mod paths;
mod power;
mod progress;
mod results;
mod sweep;

pub use args::BackendChoice;
pub use error::{
    CliError, ErrorKind, EXIT_FAILURE, EXIT_IO, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE,
};

use args::{Cli, Command};
use clap::Parser;

/// Run the CLI and return the process exit code: 0 success, 1 a device or run
/// failure, 2 bad input, 3 a file that could not be read or written, 128 + N
/// stopped by signal N (130 for SIGINT, 143 for SIGTERM).
pub fn main() -> i32 {
    log::install();
    if let Some(commit) = option_env!("JOULEBENCH_GIT_COMMIT") {
        joulebench_core::sweep::set_build_commit(commit);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Devices(a) => devices::run(&a),
        Command::Sweep(a) => sweep::run(&a),
        Command::Model(a) => model::run(&a),
        Command::Report(a) => results::report(&a),
        Command::Recommend(a) => results::recommend(&a),
        Command::Merge(a) => merge::run(&a),
        Command::Compare(a) => compare::run(&a),
        Command::Power(c) => power::run(&c),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
