//! `joulebench merge`: one results file from the files of several machines or GPUs,
//! checked the way every reader checks (schema version, file:line of anything
//! corrupt), without exact duplicates, and never silently over an existing file.

use crate::args::MergeArgs;
use crate::error::{usage, CliError};
use crate::results::{check_new_output, read_sources, write_output};
use joulebench_analysis::merge::merge;

pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    check_new_output(&args.out, args.force, "--out")?;
    let sources = read_sources(&args.files)?;
    let merged = merge(&sources, args.allow_mixed).map_err(|e| {
        usage(format!(
            "refusing to mix simulated and real records: {e}. Pass --allow-mixed to merge them anyway: \
             each record keeps its \"simulated\" field and every table and plot marks simulated rows."
        ))
    })?;
    // Copy each kept record's line as it was written, so a field this joulebench does
    // not know survives the merge; read_records has already checked every line.
    let mut lines: Vec<Vec<String>> = Vec::new();
    for src in &sources {
        let text = std::fs::read_to_string(&src.path)
            .map_err(|e| usage(format!("cannot read {}: {e}", src.path.display())))?;
        let file_lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect();
        if file_lines.len() != src.records.len() {
            return Err(usage(format!(
                "{} changed while it was being merged",
                src.path.display()
            )));
        }
        lines.push(file_lines);
    }
    let mut text = String::new();
    for &(file, record) in &merged.origin {
        text.push_str(&lines[file][record]);
        text.push('\n');
    }
    write_output(&args.out, &text, args.force, "--out")?;
    println!(
        "Merged {} files: {} records read, {} exact duplicates dropped, {} written to {} ({} simulated, {} real).",
        sources.len(),
        merged.read,
        merged.duplicates,
        merged.records.len(),
        args.out.display(),
        merged.simulated,
        merged.real
    );
    if merged.repeated_points > 0 {
        println!(
            "{} points were measured more than once at different times; all are kept, and recommendations weigh each.",
            merged.repeated_points
        );
    }
    Ok(())
}
