//! Everything downstream of the record: grouping, Pareto fronts, the objectives
//! that pick a setting (per FLOP for an op, per token for a model's training step),
//! hardware comparisons, merging files, the settings file a launcher reads, and the
//! tables (terminal, Markdown, CSV, JSON), plots and report documents that show them.
//! It reads records only; it never reaches back into a backend.

pub mod chart;
pub mod compare;
pub mod document;
pub mod format;
pub mod inference;
pub mod memory;
pub mod merge;
pub mod plots;
pub mod recommend;
pub mod repeats;
pub mod report;
pub mod settings_file;
pub mod step;
pub mod table;
#[cfg(test)]
mod testutil;

pub use recommend::{recommend, Objective, Recommendation};
pub use table::{Table, TableFormat};
