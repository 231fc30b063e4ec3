//! A table built once and rendered four ways (nvbench keeps printers apart from
//! measuring): the terminal (tabled), Markdown, CSV and JSON. Column headers carry
//! their units.

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Table,
    Markdown,
    Csv,
    Json,
}

impl std::str::FromStr for TableFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(TableFormat::Table),
            "markdown" | "md" => Ok(TableFormat::Markdown),
            "csv" => Ok(TableFormat::Csv),
            "json" => Ok(TableFormat::Json),
            _ => Err(format!(
                "unknown format '{s}': expected table, markdown, csv or json"
            )),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Table {
    pub title: String,
    /// Lines printed under the title (e.g. that the data is simulated).
    pub notes: Vec<String>,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            notes: Vec::new(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Remove each named column whose every row says the same thing, and say what
    /// that was in a note (unless it was nothing): a column that carries no
    /// information for these rows is noise.
    pub fn drop_uninformative_columns(&mut self, names: &[&str]) {
        for name in names {
            let Some(col) = self.headers.iter().position(|h| h == name) else {
                continue;
            };
            let mut values = self
                .rows
                .iter()
                .map(|r| r.get(col).cloned().unwrap_or_default());
            let Some(first) = values.next() else {
                continue;
            };
            if !values.all(|v| v == first) {
                continue;
            }
            if !first.is_empty() && first != "–" && !name.is_empty() {
                self.notes.push(format!("{name}: {first} on every row."));
            }
            self.headers.remove(col);
            for r in &mut self.rows {
                if col < r.len() {
                    r.remove(col);
                }
            }
        }
    }

    pub fn render(&self, format: TableFormat) -> String {
        match format {
            TableFormat::Table => self.terminal(),
            TableFormat::Markdown => self.markdown(),
            TableFormat::Csv => self.csv(),
            TableFormat::Json => {
                serde_json::to_string_pretty(&self.json_rows()).unwrap_or_default()
            }
        }
    }

    fn builder(&self) -> Builder {
        let mut b = Builder::default();
        b.push_record(self.headers.clone());
        for r in &self.rows {
            b.push_record(r.clone());
        }
        b
    }

    fn terminal(&self) -> String {
        let mut out = format!("{}\n", self.title);
        for n in &self.notes {
            out.push_str(&format!("{n}\n"));
        }
        let mut t = self.builder().build();
        t.with(Style::rounded());
        out.push_str(&t.to_string());
        out.push('\n');
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        // one quoted paragraph per note: consecutive "> " lines would run together
        let quoted: Vec<String> = self.notes.iter().map(|n| format!("> {n}\n")).collect();
        out.push_str(&quoted.join(">\n"));
        if !self.notes.is_empty() {
            out.push('\n');
        }
        let mut t = self.builder().build();
        t.with(Style::markdown());
        out.push_str(&t.to_string());
        out.push('\n');
        out
    }

    fn csv(&self) -> String {
        let esc = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            out.push_str(&row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    fn json_rows(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    self.headers
                        .iter()
                        .cloned()
                        .zip(r.iter().map(|c| serde_json::Value::String(c.clone())))
                        .collect(),
                )
            })
            .collect();
        serde_json::json!({ "title": self.title, "notes": self.notes, "rows": rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Table {
        let mut t = Table::new("Demo", &["name", "energy (pJ/FLOP)"]);
        t.notes.push("SIMULATED".into());
        t.push(vec!["a,b".into(), "1.5".into()]);
        t
    }

    #[test]
    fn renders_every_format_with_the_same_cells() {
        assert!(t().render(TableFormat::Table).contains("energy (pJ/FLOP)"));
        let md = t().render(TableFormat::Markdown);
        assert!(md.contains("| name") && md.contains("> SIMULATED"), "{md}");
        assert_eq!(
            t().render(TableFormat::Csv),
            "name,energy (pJ/FLOP)\n\"a,b\",1.5\n"
        );
        let j: serde_json::Value = serde_json::from_str(&t().render(TableFormat::Json)).unwrap();
        assert_eq!(j["rows"][0]["energy (pJ/FLOP)"], "1.5");
    }
}
