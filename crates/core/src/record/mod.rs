//! The record of docs/ARCHITECTURE.md §5: one self-describing JSON object per measured (or
//! skipped, or failed) point, appended and flushed one at a time so a killed sweep
//! loses nothing it finished. Readers name the file and line of anything corrupt.
//!
//! One job a file: the schema and its keys (`schema`), the checks a record's numbers
//! pass (`check`), reading with tail detection (`read`), writing with the lock and
//! tail repair (`write`), and the engine every reader reads through, a batch of lines
//! parsed on every core at a time (`stream`).

mod check;
mod error;
mod read;
mod schema;
mod stream;
mod write;

pub use error::RecordError;
pub use read::{
    read_many, read_record_lines, read_records, read_results_file, PartialTail, RecordLine,
    ResultsFile, RunRecordLine, MAX_RECORD_LINE_BYTES,
};
pub use schema::{
    flags_now, point_key, repeat_key, MeterInfo, PointOverhead, PointStatus, PowerCapRecord,
    Record, ToolInfo, READABLE_SCHEMAS, SCHEMA_VERSION,
};
pub use stream::{
    for_each_line_within, for_each_record, for_each_record_within, LinesChecksum, StreamEnd,
    Streamed, StreamedRecord,
};
pub use write::{results_file_holder, JsonlWriter, RecordSink};

#[cfg(test)]
mod tests;
