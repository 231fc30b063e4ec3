//! Records name the git commit the `joulebench` binary was built from, when built
//! from a checkout. Only this crate rebuilds when the commit changes (a commit used
//! to rebuild the whole workspace from its core up).
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=JOULEBENCH_GIT_COMMIT");
    if std::env::var("JOULEBENCH_GIT_COMMIT").is_ok() {
        return;
    }
    // HEAD and the refs, wherever this checkout keeps them (a worktree's .git is a file)
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        println!("cargo:rerun-if-changed={common}/refs/heads");
        println!("cargo:rerun-if-changed={common}/packed-refs");
    }
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=JOULEBENCH_GIT_COMMIT={commit}");
    }
}
