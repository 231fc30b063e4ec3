//! The design document is cited by section from code, comments, examples and other
//! docs (`docs/ARCHITECTURE.md §4.3`): every such citation must name a section the
//! document has, so a reader who follows one finds it, and no citation may point at
//! a design document outside the repository.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const DOC: &str = "docs/ARCHITECTURE.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Section numbers of the document's headings: "## 4. …" is 4, "### 4.3 …" is 4.3.
fn sections(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .filter_map(|h| h.split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_string())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .collect()
}

/// Every "§N" or "§N.M" in `text`.
fn cited(text: &str) -> Vec<String> {
    text.split('§')
        .skip(1)
        .map(|rest| {
            let n: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            n.trim_end_matches('.').to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The files a citation may sit in: sources, docs, examples, scripts, configs.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "results" {
            continue;
        }
        if p.is_dir() {
            files(&p, out);
        } else if ["rs", "md", "toml", "sh", "py", "wgsl", "cu", "cuh"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
        {
            out.push(p);
        }
    }
}

#[test]
fn every_citation_of_the_design_document_names_a_section_it_has() {
    let root = root();
    let doc = fs::read_to_string(root.join(DOC)).expect("docs/ARCHITECTURE.md exists");
    let have = sections(&doc);
    assert!(have.contains("4.3") && have.contains("10"), "{have:?}");
    let mut all = Vec::new();
    files(&root, &mut all);
    let outside = ["DESIGN", ".md"].concat();
    let (mut citations, mut broken, mut stale) = (0, Vec::new(), Vec::new());
    for path in all {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(&outside) {
                stale.push(format!("{rel}:{}", i + 1));
            }
            if rel == DOC || !line.contains("ARCHITECTURE.md") {
                continue;
            }
            // a citation wrapped onto the next line ("… ARCHITECTURE.md\n§4 …")
            let next = lines.get(i + 1).copied().unwrap_or("");
            let near = format!("{line} {}", next.split_whitespace().next().unwrap_or(""));
            for n in cited(&near) {
                citations += 1;
                if !have.contains(&n) {
                    broken.push(format!("{rel}:{}: §{n}", i + 1));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "cites a design document outside the repository: {stale:?}"
    );
    assert!(
        broken.is_empty(),
        "sections docs/ARCHITECTURE.md lacks: {broken:?}"
    );
    assert!(
        citations >= 20,
        "only {citations} citations found: is the scan looking?"
    );
}

/// README and the documents under docs/: the user-facing Markdown whose links must
/// lead somewhere.
fn user_docs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub gives a document's headings: lower case, punctuation other
/// than `-` and `_` dropped, spaces as `-`, a repeated heading numbered `-1`, `-2`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

/// Every link target `[text](target)` of a Markdown text, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        // inline code is not a link: `[a](b)` inside backticks is left alone
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

/// What is wrong with the relative links of `docs`: a file that does not exist, or an
/// anchor no heading of its target has.
fn broken_links(root: &Path, docs: &[PathBuf]) -> (usize, Vec<String>) {
    let (mut checked, mut broken) = (0, Vec::new());
    for doc in docs {
        let text = fs::read_to_string(doc).unwrap();
        let rel = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{rel}: ({target}): no file {}", file.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = if file.extension().is_some_and(|x| x == "md") {
                    anchors(&fs::read_to_string(&file).unwrap())
                } else {
                    BTreeSet::new()
                };
                if !headings.contains(anchor) {
                    broken.push(format!("{rel}: ({target}): no heading #{anchor}"));
                }
            }
        }
    }
    (checked, broken)
}

#[test]
fn every_relative_link_of_readme_and_docs_leads_to_a_file_and_heading_that_exist() {
    let root = root();
    let docs = user_docs(&root);
    assert!(docs.len() > 5, "{docs:?}");
    let (checked, broken) = broken_links(&root, &docs);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked >= 30,
        "only {checked} links found: is the scan looking?"
    );
    // the check itself: a missing file and a missing heading are both caught
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.md");
    fs::write(
        &bad,
        "# Title\n\n[a](missing.md) [b](#no-such-heading) [c](#title) `[d](in-code.md)`\n\n```\n[e](fenced.md)\n```\n",
    )
    .unwrap();
    let (n, found) = broken_links(dir.path(), &[bad]);
    assert_eq!((n, found.len()), (3, 2), "{found:?}");
}

/// The long flags a `--help` text lists (its option lines, not its prose).
fn help_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| {
            let indent = l.len() - l.trim_start().len();
            (indent == 2 || indent == 6) && l.trim_start().starts_with('-')
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(',').to_string())
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The flags of `joulebench <command>` that `docs` does not name under its heading
/// `### joulebench <command>`.
fn undocumented_flags(docs: &str, command: &str) -> Vec<String> {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_joulebench"))
        .args(command.split_whitespace())
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "joulebench {command} --help");
    let flags = help_flags(&String::from_utf8_lossy(&help.stdout));
    assert!(
        !flags.is_empty(),
        "joulebench {command} --help lists no flag"
    );
    let heading = format!("\n### joulebench {command}\n");
    let Some(at) = docs.find(&heading) else {
        return flags;
    };
    let body = &docs[at + heading.len()..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    flags
        .into_iter()
        .filter(|f| !body.contains(&format!("`{f}`")) && !body.contains(&format!("`{f} ")))
        .collect()
}

const COMMANDS: [&str; 11] = [
    "devices",
    "sweep",
    "model",
    "report",
    "recommend",
    "merge",
    "compare",
    "diff",
    "run",
    "power status",
    "power restore",
];

#[test]
fn every_flag_of_every_command_is_in_the_cli_reference() {
    let docs = fs::read_to_string(root().join("docs/cli.md")).unwrap();
    let missing: Vec<String> = COMMANDS
        .iter()
        .flat_map(|c| {
            undocumented_flags(&docs, c)
                .into_iter()
                .map(move |f| format!("joulebench {c} {f}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "flags docs/cli.md's \"Every flag\" does not describe:\n{}",
        missing.join("\n")
    );
    // the check itself: a reference without sweep's table misses its flags
    let without = docs.replace("\n### joulebench sweep\n", "\n### sweep, elsewhere\n");
    assert!(undocumented_flags(&without, "sweep").len() > 20);
    let without = docs.replace("`--dry-run", "`--dry_run");
    assert!(undocumented_flags(&without, "sweep").contains(&"--dry-run".to_string()));
}
