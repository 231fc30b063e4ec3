//! `joulebench merge`: one results file from the files of several machines or GPUs,
//! checked the way every reader checks (schema version, file:line of anything
//! corrupt), without exact duplicates, and never silently over an existing file.

use crate::args::MergeArgs;
use crate::error::{usage, CliError};
use crate::out::WriteFail;
use crate::paths::{check_new_output, refuse_input_as_output, write_output_with};
use crate::results::{read_sources, refuse_single_read, reread_lines};
use joulebench_analysis::merge::MergeDigest;

pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    check_new_output(&args.out, args.force, "--out")?;
    refuse_input_as_output(&args.out, &args.files, "--out")?;
    refuse_single_read(&args.files)?;
    let mut merged = MergeDigest::default();
    let sources = read_sources(&args.files, false, |r| -> Result<(), CliError> {
        merged.push(r.record, r.file, r.index);
        Ok(())
    })?;
    if !args.allow_mixed {
        let paths: Vec<_> = sources.iter().map(|s| s.path.clone()).collect();
        merged.mixed.result(&paths).map_err(|e| {
            usage(format!(
                "refusing to mix simulated and real records: {e}. Pass --allow-mixed to merge them anyway: \
                 each record keeps its \"simulated\" field and every table and plot marks simulated rows."
            ))
        })?;
    }
    // Copy each kept record's line as it was written, so a field this joulebench does
    // not know survives the merge; the first read has already checked every line.
    let mut kept = merged.kept();
    write_output_with(&args.out, args.force, "--out", |w| {
        reread_lines(&sources, |line| -> Result<(), WriteFail> {
            if kept.next().unwrap_or(false) {
                w.write_all(line)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })
    })?;
    crate::out::line(&format!(
        "Merged {} files: {} records read, {} exact duplicates dropped, {} written to {} ({} simulated, {} real).",
        sources.len(),
        merged.read,
        merged.duplicates,
        merged.simulated + merged.real,
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
