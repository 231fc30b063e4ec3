//! The `joulebench` command line. It parses arguments, opens devices, and hands
//! data from one stage to the next (plan → sweep → records → analysis); it holds
//! no measurement or kernel logic of its own.

mod args;
mod compare;
mod cost;
mod devices;
mod diff;
mod emit;
mod error;
pub mod logging;
mod merge;
mod model;
mod out;
mod paths;
mod power;
mod progress;
mod results;
#[cfg(unix)]
mod run;
mod sweep;

pub use error::{
    CliError, ErrorKind, EXIT_FAILURE, EXIT_IO, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE,
};

use args::{Cli, Command};
use clap::Parser;

/// Run the CLI and return the process exit code: 0 success, 1 a device or run
/// failure, 2 bad input, 3 a file that could not be read or written, 128 + N
/// stopped by signal N (130 for SIGINT, 143 for SIGTERM).
pub fn main() -> i32 {
    logging::init();
    if let Some(commit) = option_env!("JOULEBENCH_GIT_COMMIT") {
        joulebench_core::sweep::set_build_commit(commit);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version: on stdout, whose failure is an I/O error
                return match out::print(&e.render().to_string()) {
                    Ok(()) => 0,
                    Err(err) if err.is_quiet() => err.exit_code(),
                    Err(err) => {
                        use std::io::Write;
                        let _ = writeln!(std::io::stderr(), "error: {err}");
                        err.exit_code()
                    }
                };
            }
            eprint!("{}", shorten_values(&e.render().to_string()));
            return EXIT_USAGE;
        }
    };
    quiet_closed_pipes();
    // a print to a closed stderr panics inside the standard library; unwinding runs
    // every guard's restore, and the panic ends as a closed pipe does
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Devices(a) => devices::run(&a),
        Command::Sweep(a) => sweep::run(&a),
        Command::Model(a) => model::run(&a),
        Command::Report(a) => results::report(&a),
        Command::Recommend(a) => results::recommend(&a),
        Command::Merge(a) => merge::run(&a),
        Command::Compare(a) => compare::run(&a),
        Command::Diff(a) => diff::run(&a),
        Command::Power(c) => power::run(&c),
        #[cfg(unix)]
        Command::Run(a) => run::run(&a),
        #[cfg(not(unix))]
        Command::Run(_) => Err(error::usage(
            "joulebench run needs a Unix system (FIFOs, process groups, signals)",
        )),
    }));
    let result = match result {
        Ok(r) => r,
        Err(payload) if out::is_closed_pipe_panic(&out::panic_message(payload.as_ref())) => {
            Err(error::closed_output())
        }
        Err(payload) => std::panic::resume_unwind(payload),
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.is_quiet() => e.exit_code(),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                shorten_values(&e.to_string())
            );
            e.exit_code()
        }
    }
}

/// Panics that are only a print to a closed pipe say nothing; others as before.
fn quiet_closed_pipes() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !out::is_closed_pipe_panic(&info.to_string()) {
            previous(info);
        }
    }));
}

/// A message with every enormous value in it (a flag or a file's field a user
/// gave, megabytes long) shortened: what it says stays readable.
fn shorten_values(message: &str) -> String {
    use joulebench_core::text::{shorten, ECHO_MAX_CHARS};
    let mut out = String::with_capacity(message.len().min(1 << 16));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(&shorten(word, ECHO_MAX_CHARS));
        word.clear();
    };
    for c in message.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}
