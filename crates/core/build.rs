//! Records name the git commit they were produced by, when built from a checkout.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=JOULEBENCH_GIT_COMMIT");
    if std::env::var("JOULEBENCH_GIT_COMMIT").is_ok() {
        return;
    }
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let commit = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=JOULEBENCH_GIT_COMMIT={commit}");
        }
    }
}
