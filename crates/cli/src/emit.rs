//! `--emit FORMAT FILE` of `recommend` and `model`: the settings file a launcher
//! reads (TOML or JSON) or the shell script that applies each GPU's power cap and
//! clocks and undoes them (sh). Checked before any work, written whole or not at all.

use crate::error::{io, runtime, usage, CliError};
use crate::paths::{check_new_output, refuse_input_as_output, write_output};
use joulebench_analysis::launcher::shell_script;
use joulebench_analysis::settings_file::{SettingsFile, SettingsFormat};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitFormat {
    Settings(SettingsFormat),
    Shell,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    pub format: EmitFormat,
    pub path: PathBuf,
}

/// `--emit toml|json|sh FILE`, its path checked against `inputs` and existing files.
pub fn parse_emit(
    arg: Option<&[String]>,
    force: bool,
    inputs: &[PathBuf],
) -> Result<Option<Emit>, CliError> {
    let Some(arg) = arg else { return Ok(None) };
    let [f, path] = arg else {
        return Err(usage("--emit takes a format and a file: --emit toml FILE"));
    };
    let format = match f.trim().to_ascii_lowercase().as_str() {
        "sh" | "shell" => EmitFormat::Shell,
        other => EmitFormat::Settings(other.parse().map_err(|e: String| {
            usage(format!(
                "--emit: {}",
                e.replace("toml or json", "toml, json or sh")
            ))
        })?),
    };
    let path = PathBuf::from(path);
    check_new_output(&path, force, "--emit")?;
    refuse_input_as_output(&path, inputs, "--emit")?;
    Ok(Some(Emit { format, path }))
}

/// Write `file` as `emit` asks; says what was written.
pub fn write_emit(emit: &Emit, file: &SettingsFile, force: bool) -> Result<String, CliError> {
    let text = match emit.format {
        EmitFormat::Settings(f) => file.to_string(f).map_err(runtime)?,
        EmitFormat::Shell => shell_script(file),
    };
    write_output(&emit.path, &text, force, "--emit")?;
    if emit.format == EmitFormat::Shell {
        make_executable(&emit.path)?;
        return Ok(format!(
            "a script applying {} device setting(s) written to {} (run it with `sh {}`; `sh {} undo` puts the defaults back){}",
            file.devices.len(),
            emit.path.display(),
            emit.path.display(),
            emit.path.display(),
            if file.simulated { "; SIMULATED entries are never applied" } else { "" }
        ));
    }
    Ok(String::new())
}

fn make_executable(path: &Path) -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(format!("cannot make {} executable: {e}", path.display())))?;
    }
    Ok(())
}
