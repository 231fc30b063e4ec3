//! Which joulebench wrote a record: every kind of record (a kernel point, a program
//! run) names its tool the same way, so a reader can tell versions apart.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_commit: Option<String>,
}
