//! The WGSL kernel files and the small preprocessor that specialises them: each file
//! is written once, and a variant is a prelude (element type, tile constants) plus a
//! choice of `#if NAME` / `#else` / `#endif` blocks, never a copy of the kernel.

use std::fmt::Write as _;

pub(crate) const MATMUL_NAIVE: &str = include_str!("../../../kernels/wgsl/matmul_naive.wgsl");
pub(crate) const MATMUL_TILED: &str = include_str!("../../../kernels/wgsl/matmul_tiled.wgsl");
pub(crate) const ATTENTION_SPLIT: &str = include_str!("../../../kernels/wgsl/attention_split.wgsl");
pub(crate) const ATTENTION_TILED: &str = include_str!("../../../kernels/wgsl/attention_tiled.wgsl");
pub(crate) const MATMUL_COOP: &str = include_str!("../../../kernels/wgsl/matmul_coop.wgsl");

/// Storage type of a kernel's tensors; arithmetic is f32 in every kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Element {
    F32,
    F16,
}

/// `source` with a prelude that declares `elem` and `consts`, and with only the
/// `#if` blocks selected by `flags` kept.
pub(crate) fn specialise(
    source: &str,
    element: Element,
    consts: &[(&str, u32)],
    flags: &[&str],
) -> Result<String, String> {
    specialise_with(source, element, &[], &[], consts, flags)
}

/// [`specialise`] with further `enable` extensions and type aliases in the prelude.
pub(crate) fn specialise_with(
    source: &str,
    element: Element,
    enables: &[&str],
    aliases: &[(&str, String)],
    consts: &[(&str, u32)],
    flags: &[&str],
) -> Result<String, String> {
    let mut out = String::with_capacity(source.len() + 256);
    // `enable` must precede every other declaration of the module. Writing to a
    // String cannot fail.
    if element == Element::F16 {
        out.push_str("enable f16;\n");
    }
    for extension in enables {
        let _ = writeln!(out, "enable {extension};");
    }
    match element {
        Element::F32 => out.push_str("alias elem = f32;\n"),
        Element::F16 => out.push_str("alias elem = f16;\n"),
    }
    for (name, ty) in aliases {
        let _ = writeln!(out, "alias {name} = {ty};");
    }
    for (name, value) in consts {
        let _ = writeln!(out, "const {name}: u32 = {value}u;");
    }
    out.push_str(&select_blocks(source, flags)?);
    Ok(out)
}

/// Keep the lines of `source` whose enclosing `#if` conditions hold. Directive lines
/// become empty lines, so line numbers in a compiler message still match the file
/// (after the prelude).
fn select_blocks(source: &str, flags: &[&str]) -> Result<String, String> {
    // One entry per open `#if`: (this branch is taken, an `#else` was seen).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(source.len());
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        let active = stack.iter().all(|&(taken, _)| taken);
        if let Some(name) = trimmed.strip_prefix("#if ") {
            stack.push((flags.contains(&name.trim()), false));
            out.push('\n');
        } else if trimmed == "#else" {
            match stack.last_mut() {
                Some((taken, seen_else)) if !*seen_else => {
                    *taken = !*taken;
                    *seen_else = true;
                }
                _ => return Err(format!("line {}: unexpected #else", number + 1)),
            }
            out.push('\n');
        } else if trimmed == "#endif" {
            if stack.pop().is_none() {
                return Err(format!("line {}: #endif without #if", number + 1));
            }
            out.push('\n');
        } else if trimmed.starts_with('#') {
            return Err(format!(
                "line {}: unknown directive '{trimmed}'",
                number + 1
            ));
        } else {
            if active {
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    if stack.is_empty() {
        Ok(out)
    } else {
        Err(format!("{} #if without #endif", stack.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(source: &str, flags: &[&str]) -> Vec<String> {
        select_blocks(source, flags)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn selects_the_branch_named_by_the_flags() {
        let src = "a\n#if FIT\nfit\n#else\nchecked\n#endif\nz\n";
        assert_eq!(kept(src, &["FIT"]), ["a", "fit", "z"]);
        assert_eq!(kept(src, &[]), ["a", "checked", "z"]);
    }

    #[test]
    fn nested_blocks_need_every_condition() {
        let src = "#if A\n#if B\nab\n#else\na\n#endif\n#endif\n";
        assert_eq!(kept(src, &["A", "B"]), ["ab"]);
        assert_eq!(kept(src, &["A"]), ["a"]);
        assert!(kept(src, &["B"]).is_empty());
    }

    #[test]
    fn keeps_line_numbers() {
        let src = "x\n#if A\ny\n#endif\nz\n";
        assert_eq!(select_blocks(src, &[]).unwrap().lines().nth(4), Some("z"));
    }

    #[test]
    fn unbalanced_directives_are_errors() {
        assert!(select_blocks("#if A\n", &[]).is_err());
        assert!(select_blocks("#endif\n", &[]).is_err());
        assert!(select_blocks("#if A\n#else\n#else\n#endif\n", &[]).is_err());
        assert!(select_blocks("#define A\n", &[]).is_err());
    }

    #[test]
    fn prelude_declares_the_element_type_first() {
        let s = specialise("fn f() {}\n", Element::F16, &[("TILE_K", 16)], &[]).unwrap();
        assert!(s.starts_with("enable f16;\nalias elem = f16;\nconst TILE_K: u32 = 16u;\n"));
        let s = specialise("", Element::F32, &[], &[]).unwrap();
        assert!(s.starts_with("alias elem = f32;"));
    }

    #[test]
    fn kernel_files_are_balanced() {
        for src in [
            MATMUL_NAIVE,
            MATMUL_TILED,
            MATMUL_COOP,
            ATTENTION_SPLIT,
            ATTENTION_TILED,
        ] {
            select_blocks(src, &["FIT", "DOUBLE_BUFFER"]).unwrap();
            select_blocks(src, &[]).unwrap();
        }
    }
}
