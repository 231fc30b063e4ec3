//! Everything downstream of the record: grouping, Pareto fronts, the objectives
//! that pick a setting, and the tables (terminal, Markdown, CSV, JSON) that show
//! them. It reads records only; it never reaches back into a backend.

pub mod format;
pub mod recommend;
pub mod report;
pub mod table;

pub use recommend::{recommend, Objective, Recommendation};
pub use table::{Table, TableFormat};
