//! Everything downstream of the record: grouping, Pareto fronts, the objectives
//! that pick a setting (per FLOP for an op, per token for a model's training step),
//! the significance and attribution rules that keep advice honest, one setting per
//! GPU, hardware comparisons, merging files, the settings file and script a launcher
//! reads, and the tables (terminal, Markdown, CSV, JSON), plots and report documents
//! that show them. It reads records only; it never reaches back into a backend.

#[cfg(test)]
mod advice_tests;
pub mod attribution;
pub mod baseline;
pub mod chart;
pub mod compare;
pub mod cost;
pub mod device_setting;
pub mod devices;
pub mod diff;
pub mod digest;
pub mod document;
pub mod document_digest;
pub mod format;
pub mod inference;
pub mod launcher;
pub mod levers;
pub mod memory;
pub mod merge;
pub mod objective;
pub mod plots;
pub mod recommend;
pub mod recommend_table;
pub mod repeats;
pub mod report;
pub mod run_report;
pub mod setting;
pub mod settings_file;
pub mod significance;
pub mod step;
pub mod table;
pub mod table_stream;
#[cfg(test)]
mod testutil;
pub mod tokens;

pub use recommend::{recommend, Objective, Recommendation};
pub use table::{Table, TableFormat};
