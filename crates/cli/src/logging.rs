//! Where the libraries' `tracing` events go when joulebench runs as a program:
//! stderr, one plain line each, as the messages read before the libraries used
//! `tracing` (no time, level or module in front). A program that embeds the
//! libraries installs its own subscriber instead. `JOULEBENCH_LOG` sets the least
//! severe level shown (`error`, `warn`, `info` — the default —, `debug`, `trace`).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The variable that sets the level.
pub const LOG_ENV: &str = "JOULEBENCH_LOG";

/// The level `JOULEBENCH_LOG` asks for; `info` when unset or not a level.
pub fn level_from_env() -> LevelFilter {
    level_from(std::env::var(LOG_ENV).ok().as_deref())
}

fn level_from(value: Option<&str>) -> LevelFilter {
    value
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Plain lines to `writer`, at `level` and above.
fn subscriber<W>(writer: W, level: LevelFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(level)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .finish()
}

/// Install the subscriber for this process. A second call (a bench that shares
/// set-up code) leaves the first in place.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stderr, level_from_env()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn shown(level: LevelFilter, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        tracing::subscriber::with_default(subscriber(move || writer.clone(), level), emit);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_library_warning_reads_as_the_message_alone() {
        let text = shown(LevelFilter::INFO, || {
            tracing::warn!("energy meter read failed: the GPU is lost; this sample counts 0 J");
            tracing::debug!("not shown at info");
        });
        assert_eq!(
            text,
            "energy meter read failed: the GPU is lost; this sample counts 0 J\n"
        );
        assert_eq!(shown(LevelFilter::ERROR, || tracing::warn!("quiet")), "");
    }

    #[test]
    fn the_level_comes_from_the_variable_or_is_info() {
        assert_eq!(level_from(Some("warn")), LevelFilter::WARN);
        assert_eq!(level_from(Some(" debug ")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("loud")), LevelFilter::INFO);
        assert_eq!(level_from(None), LevelFilter::INFO);
    }
}
