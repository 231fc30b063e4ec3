//! The timed choice of a wgsl-tiled variant. Which tile shape is fastest depends on
//! the adapter (its cores, caches, registers and compiler) more than any rule can say,
//! so the first time a (adapter, shape, precision) is seen, every variant that runs is
//! timed briefly and the fastest is kept — in memory, and on disk beside the CUDA
//! kernel cache so that later runs and other processes reuse it without timing again.

use crate::adapter::AdapterReport;
use joulebench_core::{MatmulShape, Precision};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable that turns the search on (`1`, `on`) or off (`0`, `off`).
pub const SEARCH_ENV: &str = "JOULEBENCH_WGPU_SEARCH";

/// How `wgsl-tiled` picks its variant when none is forced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariantSearch {
    /// The fixed rule (the first variant that tiles the shape exactly): the same
    /// choice on every run, which is what tests want.
    Fixed,
    /// Time every variant the first time a shape is seen and keep the fastest, in
    /// memory and, with a directory, on disk.
    Timed { cache_dir: Option<PathBuf> },
}

impl VariantSearch {
    /// The search `SEARCH_ENV` asks for; unset, timed on a GPU whose cache directory
    /// can be written, fixed on a CPU emulation (whose times say nothing about a GPU,
    /// and where the tests run).
    pub fn from_env(adapter: &AdapterReport) -> VariantSearch {
        let asked = std::env::var(SEARCH_ENV).ok();
        let on = match asked.as_deref().map(str::trim) {
            Some("0" | "off" | "false" | "no") => false,
            Some("1" | "on" | "true" | "yes") => true,
            _ => !adapter.cpu_emulation,
        };
        match (on, cache_dir().filter(|d| writable(d))) {
            (true, Some(dir)) => VariantSearch::Timed {
                cache_dir: Some(dir),
            },
            // Without a cache every run would time again, and two runs could choose
            // differently: an explicit request still searches, in memory only.
            (true, None) if asked.is_some() => VariantSearch::Timed { cache_dir: None },
            _ => VariantSearch::Fixed,
        }
    }
}

/// Where choices are kept: `JOULEBENCH_CACHE_DIR/wgpu`, else
/// `$XDG_CACHE_HOME/joulebench/wgpu`, else `~/.cache/joulebench/wgpu` — the base the
/// CUDA backend's NVRTC cache uses (`crates/cuda/src/nvrtc.rs`, `disk_cache_dir`).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("JOULEBENCH_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("wgpu"));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("joulebench").join("wgpu"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/joulebench/wgpu"))
}

/// Whether files can be created in `dir` (created if missing).
fn writable(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// What one search measured, as written to disk. The identifying fields are stored
/// in full so a hash collision cannot hand one shape another's choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SearchRecord {
    pub adapter: String,
    pub shape: String,
    pub precision: String,
    /// Hash of the kernel source and the variant list: a new kernel searches again.
    pub kernel_hash: String,
    pub chosen: String,
    /// Each variant timed, with its seconds per matmul (the fastest first).
    pub seconds_per_op: Vec<(String, f64)>,
}

/// The fields a choice is keyed on.
pub(crate) struct SearchKey {
    adapter: String,
    shape: String,
    precision: String,
    kernel_hash: String,
}

impl SearchKey {
    pub fn new(
        adapter: &AdapterReport,
        s: &MatmulShape,
        precision: Precision,
        kernel: &str,
    ) -> Self {
        let i = &adapter.info;
        SearchKey {
            adapter: format!(
                "{} | {} | {} {} | {:04x}:{:04x}",
                i.name, i.backend, i.driver, i.driver_info, i.vendor_id, i.device_id
            ),
            shape: format!("{}x{}x{} b{}", s.m, s.n, s.k, s.batch),
            precision: precision.to_string(),
            kernel_hash: format!("{:016x}", fnv1a(&[kernel.as_bytes()])),
        }
    }

    fn file_name(&self) -> String {
        let h = fnv1a(&[
            self.adapter.as_bytes(),
            self.shape.as_bytes(),
            self.precision.as_bytes(),
            self.kernel_hash.as_bytes(),
        ]);
        format!("tiled-{h:016x}.json")
    }

    fn matches(&self, r: &SearchRecord) -> bool {
        r.adapter == self.adapter
            && r.shape == self.shape
            && r.precision == self.precision
            && r.kernel_hash == self.kernel_hash
    }

    pub fn record(&self, seconds_per_op: Vec<(String, f64)>) -> Option<SearchRecord> {
        let chosen = seconds_per_op.first()?.0.clone();
        Some(SearchRecord {
            adapter: self.adapter.clone(),
            shape: self.shape.clone(),
            precision: self.precision.clone(),
            kernel_hash: self.kernel_hash.clone(),
            chosen,
            seconds_per_op,
        })
    }

    /// The choice stored in `dir` for this key, if there is a readable one.
    pub fn load(&self, dir: &Path) -> Option<SearchRecord> {
        let text = std::fs::read_to_string(dir.join(self.file_name())).ok()?;
        let record: SearchRecord = serde_json::from_str(&text).ok()?;
        self.matches(&record).then_some(record)
    }

    /// Store `record` in `dir`, replacing the file atomically so that a reader never
    /// sees half of it. A cache that cannot be written costs only a search next time.
    pub fn store(&self, dir: &Path, record: &SearchRecord) {
        let Ok(text) = serde_json::to_string_pretty(record) else {
            return;
        };
        let path = dir.join(self.file_name());
        let tmp = dir.join(format!("{}.{}.tmp", self.file_name(), std::process::id()));
        let written = std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, text).is_ok();
        if written && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// FNV-1a, 64 bit: stable across runs and builds (unlike std's hasher), as the CUDA
/// cache's file names.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How long each variant is timed: at least `MIN_TIMED_S` of dispatches (or one
/// dispatch, if one takes longer), after one untimed dispatch that absorbs the
/// driver's first-use costs. A variant already `GIVE_UP_FACTOR` times slower than
/// the best so far is not timed further. So a search costs about
/// `variants × (2 × MIN_TIMED_S + 2 dispatches)` at most.
pub(crate) const MIN_TIMED_S: f64 = 0.02;
pub(crate) const GIVE_UP_FACTOR: f64 = 3.0;

/// Seconds per dispatch of one variant, timed by `run(iterations) -> seconds` as
/// described at [`MIN_TIMED_S`]; `best_s` is the fastest variant so far.
pub(crate) fn time_variant(
    mut run: impl FnMut(u64) -> Result<f64, String>,
    best_s: Option<f64>,
) -> Result<f64, String> {
    run(1)?;
    let mut iterations = 1u64;
    loop {
        let seconds = run(iterations)?;
        let per_op = seconds / iterations as f64;
        let slow = best_s.is_some_and(|b| per_op > GIVE_UP_FACTOR * b);
        if seconds >= MIN_TIMED_S || slow || !per_op.is_finite() || per_op <= 0.0 {
            return Ok(per_op);
        }
        // Aim past the minimum in one more step.
        let wanted = (2.0 * MIN_TIMED_S / per_op.max(1e-9)).ceil() as u64;
        iterations = wanted.clamp(iterations * 2, 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: u64) -> SearchKey {
        let a = crate::adapter::test_report(0, "Some GPU", "DiscreteGpu", "Vulkan");
        let s = MatmulShape {
            batch: 1,
            m,
            n: 64,
            k: 64,
        };
        SearchKey::new(&a, &s, Precision::F32, "kernel source")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::env::temp_dir().join(format!(
            "joulebench-tune-{name}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn a_stored_choice_is_found_again_and_only_for_its_key() {
        let dir = temp_dir("roundtrip");
        let k = key(64);
        let record = k
            .record(vec![("fast".into(), 1e-3), ("slow".into(), 2e-3)])
            .unwrap();
        assert_eq!(record.chosen, "fast");
        k.store(&dir, &record);
        assert_eq!(k.load(&dir), Some(record));
        assert_eq!(key(128).load(&dir), None);
        // A damaged file is ignored, not trusted.
        std::fs::write(dir.join(k.file_name()), "{ not json").unwrap();
        assert_eq!(k.load(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_under_another_key_is_not_used() {
        let dir = temp_dir("collision");
        let (k64, k128) = (key(64), key(128));
        // As if two keys hashed to one file name.
        let other = k128.record(vec![("x".into(), 1.0)]).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(k64.file_name()),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        assert_eq!(k64.load(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn timing_runs_long_enough_and_gives_up_on_slow_variants() {
        // A variant taking 1 ms per dispatch: timed until at least MIN_TIMED_S.
        let mut calls = Vec::new();
        let per_op = time_variant(
            |n| {
                calls.push(n);
                Ok(n as f64 * 1e-3)
            },
            None,
        )
        .unwrap();
        assert!((per_op - 1e-3).abs() < 1e-12);
        let last = *calls.last().unwrap();
        assert!(last as f64 * 1e-3 >= MIN_TIMED_S, "{calls:?}");
        assert_eq!(calls[0], 1, "one untimed warm-up dispatch");
        // Ten times slower than the best so far: one timed dispatch is enough.
        let mut slow_calls = 0;
        let per_op = time_variant(
            |n| {
                slow_calls += 1;
                Ok(n as f64 * 1e-3)
            },
            Some(1e-4),
        )
        .unwrap();
        assert_eq!((per_op, slow_calls), (1e-3, 2));
        // Errors come through.
        assert!(time_variant(|_| Err("lost".into()), None).is_err());
    }

    #[test]
    fn unreadable_cache_directories_are_not_writable() {
        assert!(!writable(Path::new("/proc/joulebench-cannot-exist")));
        let dir = temp_dir("writable");
        assert!(writable(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
