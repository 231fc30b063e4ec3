//! The `joulebench` binary: everything lives in `joulebench-cli`; this file only
//! hands over the process exit code, so the root package can own benches/ and tests/.

fn main() {
    std::process::exit(joulebench_cli::main());
}
