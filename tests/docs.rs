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
