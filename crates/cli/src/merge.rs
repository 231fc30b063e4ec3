//! `joulebench merge`: one results file from the files of several machines or GPUs,
//! checked the way every reader checks (schema version, file:line of anything
//! corrupt), without exact duplicates, and never silently over an existing file.

use crate::args::MergeArgs;
use crate::error::{usage, CliError};
use crate::paths::{check_new_output, refuse_input_as_output, write_output};
use crate::results::read_sources_raw;
use joulebench_analysis::merge::merge;

pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    check_new_output(&args.out, args.force, "--out")?;
    refuse_input_as_output(&args.out, &args.files, "--out")?;
    let sources = read_sources_raw(&args.files)?;
    let merged = merge(&sources, args.allow_mixed).map_err(|e| {
        usage(format!(
            "refusing to mix simulated and real records: {e}. Pass --allow-mixed to merge them anyway: \
             each record keeps its \"simulated\" field and every table and plot marks simulated rows."
        ))
    })?;
    // Copy each kept record's line as it was written, so a field this joulebench does
    // not know survives the merge; the reader has already checked every line.
    let mut text = String::new();
    for &(file, record) in &merged.origin {
        text.push_str(&sources[file].lines[record]);
        text.push('\n');
    }
    write_output(&args.out, &text, args.force, "--out")?;
    crate::out::line(&format!(
        "Merged {} files: {} records read, {} exact duplicates dropped, {} written to {} ({} simulated, {} real).",
        sources.len(),
        merged.read,
        merged.duplicates,
        merged.records.len(),
        args.out.display(),
        merged.simulated,
        merged.real
    ))?;
    if merged.repeated_points > 0 {
        crate::out::line(&format!(
            "{} points were measured more than once at different times; all are kept, and recommendations weigh each.",
            merged.repeated_points
        ))?;
    }
    Ok(())
}
