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
        let mut plan = UninformativeColumns::new(&self.headers, names);
        for r in &self.rows {
            plan.add(r);
        }
        plan.decide();
        plan.apply_head(self);
        self.rows = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| plan.row(r))
            .collect();
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

    /// Every cell passed through `cell`: names come from records, which anyone can
    /// write, so each format escapes what would break out of its cell.
    fn builder(&self, cell: fn(&str) -> String) -> Builder {
        let mut b = Builder::default();
        b.push_record(self.headers.iter().map(|h| cell(h)));
        for r in &self.rows {
            b.push_record(r.iter().map(|c| cell(c)));
        }
        b
    }

    fn terminal(&self) -> String {
        let mut out = format!("{}\n", terminal_cell(&self.title));
        for n in &self.notes {
            out.push_str(&format!("{}\n", terminal_cell(n)));
        }
        let mut t = self.builder(terminal_cell).build();
        t.with(Style::rounded());
        out.push_str(&t.to_string());
        out.push('\n');
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        // one quoted paragraph per note: consecutive "> " lines would run together
        let quoted: Vec<String> = self
            .notes
            .iter()
            .map(|n| format!("> {}\n", markdown_cell(n)))
            .collect();
        out.push_str(&quoted.join(">\n"));
        if !self.notes.is_empty() {
            out.push('\n');
        }
        let mut t = self.builder(markdown_cell).build();
        t.with(Style::markdown());
        out.push_str(&t.to_string());
        out.push('\n');
        out
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            out.push_str(
                &row.iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
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

/// A cell in a Markdown table: a pipe, a newline or HTML would end the cell, the
/// row or the table (or inject markup), so they are escaped; a backslash too, or it
/// would escape the escaping.
pub fn markdown_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CSV field: quoted where it holds a separator, a quote or a line break, and
/// kept from being read as a spreadsheet formula.
pub fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '@', '\t', '\r'])
        || (s.starts_with(['+', '-'])
            && !s[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'));
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A cell on a terminal: control characters (newlines, escape sequences that could
/// rewrite the screen) become spaces.
pub fn terminal_cell(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Which of some named columns say the same thing on every row, learnt from the
/// rows one at a time: [`Table::drop_uninformative_columns`] for a table whose rows
/// are not held.
#[derive(Clone, Debug)]
pub struct UninformativeColumns {
    names: Vec<String>,
    headers: Vec<String>,
    /// Per column: the first row's cell, and whether every row since said the same.
    seen: Vec<Option<(String, bool)>>,
    /// The columns to drop, as indices of the headers, and the notes saying what they held.
    dropped: Vec<usize>,
    notes: Vec<String>,
}

impl UninformativeColumns {
    pub fn new(headers: &[String], names: &[&str]) -> UninformativeColumns {
        UninformativeColumns {
            names: names.iter().map(|n| n.to_string()).collect(),
            headers: headers.to_vec(),
            seen: vec![None; headers.len()],
            dropped: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn add(&mut self, row: &[String]) {
        for (col, h) in self.headers.iter().enumerate() {
            if !self.names.contains(h) {
                continue;
            }
            let cell = row.get(col).map(String::as_str).unwrap_or_default();
            match &mut self.seen[col] {
                None => self.seen[col] = Some((cell.to_string(), true)),
                Some((first, same)) => *same &= first == cell,
            }
        }
    }

    /// Decide, as [`Table::drop_uninformative_columns`] does, name by name.
    pub fn decide(&mut self) {
        let mut left: Vec<usize> = (0..self.headers.len()).collect();
        for name in &self.names {
            let Some(at) = left.iter().position(|&c| &self.headers[c] == name) else {
                continue;
            };
            let col = left[at];
            let Some((first, true)) = &self.seen[col] else {
                continue;
            };
            if !first.is_empty() && first != "–" && !name.is_empty() {
                self.notes.push(format!("{name}: {first} on every row."));
            }
            left.remove(at);
            self.dropped.push(col);
        }
        self.dropped.sort_unstable();
    }

    /// The head without the dropped columns, with a note for each that said something.
    pub fn apply_head(&self, t: &mut Table) {
        t.notes.extend(self.notes.iter().cloned());
        t.headers = self.row(std::mem::take(&mut t.headers));
    }

    /// A row without the dropped columns.
    pub fn row(&self, mut row: Vec<String>) -> Vec<String> {
        for &col in self.dropped.iter().rev() {
            if col < row.len() {
                row.remove(col);
            }
        }
        row
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

    #[test]
    fn hostile_names_stay_inside_their_cell() {
        let mut t = Table::new("T", &["name", "x"]);
        t.push(vec![
            "GPU | x\n| injected | row |\n<script>alert(1)</script>\\|".into(),
            "=HYPERLINK(\"http://e\")".into(),
        ]);
        let md = t.render(TableFormat::Markdown);
        // header, separator and one row: the newlines did not make rows
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert!(!md.contains("<script>"), "{md}");
        // every pipe inside the cell is escaped: the row still has three columns
        let unescaped = rows[2].replace("\\\\", "").replace("\\|", "");
        assert_eq!(unescaped.matches('|').count(), 3, "{}", rows[2]);
        let csv = t.render(TableFormat::Csv);
        assert_eq!(csv.lines().count(), 4, "{csv}"); // header, then a row over three lines
        assert!(csv.contains("\"'=HYPERLINK(\"\"http://e\"\")\""), "{csv}");
        assert_eq!(csv_cell("-5.3%"), "-5.3%");
        let term = t.render(TableFormat::Table);
        assert!(
            term.lines()
                .any(|l| l.contains("GPU") && l.contains("injected")),
            "{term}"
        );
    }
}
