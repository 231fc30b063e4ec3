//! A table too long to hold — one row per record of a fleet's campaign — written
//! row by row with exactly the bytes [`Table::render`] gives for the same rows. The
//! terminal and Markdown formats align columns, so their rows are seen twice: once
//! to measure the columns ([`ColumnWidths`]), once to write ([`RowWriter`]).

pub use crate::table::UninformativeColumns;
use crate::table::{csv_cell, markdown_cell, terminal_cell, Table, TableFormat};
use std::io::{self, Write};
use tabled::grid::util::string::get_text_width;

/// The width of each column as the format draws it, from the headers and every row.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnWidths {
    format: TableFormat,
    widths: Vec<usize>,
}

impl ColumnWidths {
    /// The widths of `table`'s headers (and of any rows it already holds).
    pub fn of(table: &Table, format: TableFormat) -> ColumnWidths {
        let mut w = ColumnWidths {
            format,
            widths: Vec::new(),
        };
        w.add(&table.headers);
        for r in &table.rows {
            w.add(r);
        }
        w
    }

    /// Forget column `col` (the columns after it move up), where it was measured.
    pub fn remove(&mut self, col: usize) {
        if col < self.widths.len() {
            self.widths.remove(col);
        }
    }

    /// Widen the columns to hold `row` (a format that does not align ignores it).
    pub fn add(&mut self, row: &[String]) {
        let escape = match self.format {
            TableFormat::Table => terminal_cell,
            TableFormat::Markdown => markdown_cell,
            TableFormat::Csv | TableFormat::Json => return,
        };
        if self.widths.len() < row.len() {
            self.widths.resize(row.len(), 0);
        }
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(width(&escape(cell)));
        }
    }
}

/// Writes a table's rows one at a time; [`RowWriter::finish`] ends the table.
pub struct RowWriter<'a> {
    format: TableFormat,
    widths: Vec<usize>,
    headers: &'a [String],
    title: &'a str,
    out: &'a mut dyn Write,
    rows: usize,
}

impl Table {
    /// Write the whole table, the bytes [`Table::render`] gives, without making
    /// the text first: a campaign's tables run to megabytes.
    pub fn write_to(&self, format: TableFormat, out: &mut dyn Write) -> io::Result<()> {
        let widths = ColumnWidths::of(self, format);
        let mut w = self.write_head(format, &widths, out)?;
        for r in &self.rows {
            w.row(r)?;
        }
        w.finish()
    }

    /// Write the title, the notes and the headers of `self` (its rows are not
    /// written): the rows follow through the writer returned. `widths` must have
    /// seen the headers and every row to come.
    pub fn write_head<'a>(
        &'a self,
        format: TableFormat,
        widths: &ColumnWidths,
        out: &'a mut dyn Write,
    ) -> io::Result<RowWriter<'a>> {
        let mut w = RowWriter {
            format,
            widths: widths.widths.clone(),
            headers: &self.headers,
            title: &self.title,
            out,
            rows: 0,
        };
        match format {
            TableFormat::Table => {
                writeln!(w.out, "{}", terminal_cell(&self.title))?;
                for n in &self.notes {
                    writeln!(w.out, "{}", terminal_cell(n))?;
                }
                w.rule('╭', '┬', '╮', '─')?;
                w.out.write_all(b"\n")?;
                w.cells(&self.headers, terminal_cell, '│')?;
            }
            TableFormat::Markdown => {
                write!(w.out, "### {}\n\n", self.title)?;
                let quoted: Vec<String> = self
                    .notes
                    .iter()
                    .map(|n| format!("> {}\n", markdown_cell(n)))
                    .collect();
                w.out.write_all(quoted.join(">\n").as_bytes())?;
                if !self.notes.is_empty() {
                    w.out.write_all(b"\n")?;
                }
                w.cells(&self.headers, markdown_cell, '|')?;
                w.out.write_all(b"\n")?;
                w.rule('|', '|', '|', '-')?;
            }
            TableFormat::Csv => w.csv_line(&self.headers)?,
            TableFormat::Json => {
                w.out.write_all(b"{\n  \"notes\": ")?;
                if self.notes.is_empty() {
                    w.out.write_all(b"[]")?;
                } else {
                    w.out.write_all(b"[")?;
                    for (i, n) in self.notes.iter().enumerate() {
                        let sep = if i == 0 { "\n" } else { ",\n" };
                        write!(w.out, "{sep}    {}", json_string(n))?;
                    }
                    w.out.write_all(b"\n  ]")?;
                }
                w.out.write_all(b",\n  \"rows\": [")?;
            }
        }
        Ok(w)
    }
}

/// How wide an escaped cell is drawn, as the whole table measures it (printable
/// ASCII, what nearly every cell is, one column a byte).
fn width(escaped: &str) -> usize {
    if escaped.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        escaped.len()
    } else {
        get_text_width(escaped)
    }
}

/// A string as JSON writes it.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl RowWriter<'_> {
    pub fn row(&mut self, row: &[String]) -> io::Result<()> {
        match self.format {
            TableFormat::Table => {
                if self.rows == 0 {
                    self.out.write_all(b"\n")?;
                    self.rule('├', '┼', '┤', '─')?;
                }
                self.out.write_all(b"\n")?;
                self.cells(row, terminal_cell, '│')?;
            }
            TableFormat::Markdown => {
                self.out.write_all(b"\n")?;
                self.cells(row, markdown_cell, '|')?;
            }
            TableFormat::Csv => self.csv_line(row)?,
            TableFormat::Json => {
                let object: serde_json::Map<String, serde_json::Value> = self
                    .headers
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|c| serde_json::Value::String(c.clone())))
                    .collect();
                let text = serde_json::to_string_pretty(&object).map_err(io::Error::other)?;
                self.out.write_all(if self.rows == 0 {
                    b"\n    "
                } else {
                    b",\n    "
                })?;
                self.out
                    .write_all(text.replace('\n', "\n    ").as_bytes())?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// End the table as [`Table::render`] ends it, with the line end every
    /// format's rendering ends with here (JSON's has none).
    pub fn finish(mut self) -> io::Result<()> {
        match self.format {
            TableFormat::Table => {
                self.out.write_all(b"\n")?;
                if self.rows == 0 {
                    // with the header alone the line under it is the table's last
                    self.rule('├', '┼', '┤', '─')?;
                } else {
                    self.rule('╰', '┴', '╯', '─')?;
                }
                self.out.write_all(b"\n")
            }
            TableFormat::Markdown => self.out.write_all(b"\n"),
            TableFormat::Csv => Ok(()),
            TableFormat::Json => {
                if self.rows > 0 {
                    self.out.write_all(b"\n  ")?;
                }
                write!(self.out, "],\n  \"title\": {}\n}}", json_string(self.title))
            }
        }
    }

    /// A horizontal line, `fill` across each column and its padding.
    fn rule(&mut self, left: char, joint: char, right: char, fill: char) -> io::Result<()> {
        let mut line = String::from(left);
        for (i, w) in self.widths.iter().enumerate() {
            if i > 0 {
                line.push(joint);
            }
            line.extend(std::iter::repeat_n(fill, w + 2));
        }
        line.push(right);
        self.out.write_all(line.as_bytes())
    }

    /// One row of cells, each escaped, padded to its column and between `bar`s.
    fn cells(&mut self, row: &[String], escape: fn(&str) -> String, bar: char) -> io::Result<()> {
        let mut line = String::from(bar);
        for (i, w) in self.widths.iter().enumerate() {
            let cell = row.get(i).map(|c| escape(c)).unwrap_or_default();
            let pad = w.saturating_sub(width(&cell));
            line.push(' ');
            line.push_str(&cell);
            line.extend(std::iter::repeat_n(' ', pad + 1));
            line.push(bar);
        }
        self.out.write_all(line.as_bytes())
    }

    fn csv_line(&mut self, row: &[String]) -> io::Result<()> {
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        self.out.write_all(cells.join(",").as_bytes())?;
        self.out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `t` written row by row, as a long table is.
    fn streamed(t: &Table, format: TableFormat) -> String {
        let mut out = Vec::new();
        t.write_to(format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn tables() -> Vec<Table> {
        let cells = [
            "",
            "a",
            "1.50",
            "–",
            "全角テキスト",
            "e\u{301}",
            "x|y",
            "a\nb",
            "<b>&",
            "=1+2",
            "\"q\",",
            "😀",
            "\t",
            "→",
            "a\\|",
            " lead",
            "ß",
        ];
        let mut out = Vec::new();
        let mut seed = 7u64;
        let mut pick = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for rows in [0, 1, 2, 5] {
            for cols in [1usize, 2, 4] {
                for notes in [0, 1, 2] {
                    let headers: Vec<String> = (0..cols)
                        .map(|i| format!("h{}", cells[pick(cells.len())]) + &i.to_string())
                        .collect();
                    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
                    let mut t = Table::new(format!("Title {}", cells[pick(cells.len())]), &refs);
                    for n in 0..notes {
                        t.notes
                            .push(format!("note {n} {}", cells[pick(cells.len())]));
                    }
                    for _ in 0..rows {
                        // rows as long as the headers, and now and then shorter or longer
                        let len = match pick(6) {
                            0 => cols.saturating_sub(1),
                            1 => cols + 1,
                            _ => cols,
                        };
                        t.push(
                            (0..len)
                                .map(|_| cells[pick(cells.len())].to_string())
                                .collect(),
                        );
                    }
                    out.push(t);
                }
            }
        }
        // a header named twice: JSON keeps the last cell
        let mut t = Table::new("Twice", &["a", "a", "b"]);
        t.push(vec!["1".into(), "2".into(), "3".into()]);
        out.push(t);
        out
    }

    #[test]
    fn a_table_written_row_by_row_is_the_table_rendered_whole() {
        for t in tables() {
            for f in [
                TableFormat::Table,
                TableFormat::Markdown,
                TableFormat::Csv,
                TableFormat::Json,
            ] {
                let mut whole = t.render(f);
                if f != TableFormat::Json && f != TableFormat::Csv {
                    assert!(whole.ends_with('\n'));
                }
                if f == TableFormat::Json {
                    // render gives JSON without a line end; so does the writer
                    whole = whole.trim_end().to_string();
                }
                assert_eq!(streamed(&t, f), whole, "{f:?} of {t:?}");
            }
        }
    }
}
