//! Standard output for every command. A reader that stops early (`joulebench
//! recommend … | head -1`) closes the pipe: the output then ends quietly with the
//! shell's status for it (141) instead of a panic, and whatever the command holds
//! (a GPU's power limit, a lock) is released on the way out as on any error.

use crate::error::{closed_output, io, CliError};
use std::io::Write;

/// Write `text` to standard output as it is.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(stdout_error)
}

/// Why writing a long output stopped: the output itself failed, or what fed it
/// did (a second read of a results file, say).
#[derive(Debug)]
pub enum WriteFail {
    Output(std::io::Error),
    Other(CliError),
}

impl From<std::io::Error> for WriteFail {
    fn from(e: std::io::Error) -> Self {
        WriteFail::Output(e)
    }
}

impl From<CliError> for WriteFail {
    fn from(e: CliError) -> Self {
        WriteFail::Other(e)
    }
}

impl From<joulebench_core::record::RecordError> for WriteFail {
    fn from(e: joulebench_core::record::RecordError) -> Self {
        WriteFail::Other(e.into())
    }
}

impl WriteFail {
    /// The error, a failure of the output said as `output` says it.
    pub fn into_cli(self, output: impl FnOnce(std::io::Error) -> CliError) -> CliError {
        match self {
            WriteFail::Output(e) => output(e),
            WriteFail::Other(e) => e,
        }
    }
}

/// An output too long to hold, written to standard output as `write` makes it.
pub fn stream(write: impl FnOnce(&mut dyn Write) -> Result<(), WriteFail>) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    write(&mut out)
        .and_then(|_| out.flush().map_err(WriteFail::Output))
        .map_err(|e| e.into_cli(stdout_error))
}

fn stdout_error(e: std::io::Error) -> CliError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => closed_output(),
        _ => io(format!("cannot write to standard output: {e}")),
    }
}

/// Write `text` and a line end.
pub fn line(text: &str) -> Result<(), CliError> {
    print(&format!("{text}\n"))
}

/// Whether a panic is the standard library's failure to print to a closed pipe
/// (`println!`/`eprintln!` on EPIPE): such a panic ends the program quietly.
pub fn is_closed_pipe_panic(message: &str) -> bool {
    message.contains("failed printing to std") && message.contains("Broken pipe")
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
