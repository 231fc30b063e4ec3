//! wgpu windows as busy as CUDA's: the share of each window the device sat idle,
//! by its own timestamps, with blocks submitted serially (encode, submit, wait,
//! then a second round trip for the timestamps) and pipelined (several
//! submissions in flight, the next block's first encoded ahead, the timestamps
//! read back with the block), on the default adapter — lavapipe without a GPU.
//! Measured in one run, as a ratio: the figures move with the machine's load.

use joulebench_core::meter::NoMeter;
use joulebench_core::protocol::{measure, MeasureContext, ProtocolConfig, MAX_IDLE_SHARE};
use joulebench_core::stats::median;
use joulebench_core::suite::required;
use joulebench_core::{Backend, MatmulShape, Precision, SystemClock, ValidityFlag, Workload};
use joulebench_wgpu::{Submission, VariantSearch, WgpuBackend, KERNEL_TILED};

fn backend() -> Option<WgpuBackend> {
    match joulebench_wgpu::open(None) {
        Ok(mut b) => {
            b.set_variant_search(VariantSearch::Fixed);
            Some(b)
        }
        Err(e) if required(true) => panic!("wgpu adapter required under CI=true: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// The idle share of each of four time-only windows of wgsl-tiled f32 at `n`³.
fn idle_shares(b: &mut WgpuBackend, submission: Submission, n: u64) -> Vec<f64> {
    b.set_submission(submission);
    let w = Workload::Matmul(MatmulShape {
        batch: 1,
        m: n,
        n,
        k: n,
    });
    let mut k = b.prepare(KERNEL_TILED, Precision::F32, &w, 1).unwrap();
    let cfg = ProtocolConfig {
        idle_baseline_s: 0.0,
        warmup_s: 0.2,
        warmup_max_s: 0.2,
        min_window_s: 0.25,
        min_windows: 4,
        max_windows: 4,
        ..ProtocolConfig::default()
    };
    let mut meter = NoMeter {
        reason: "a CPU emulation has no energy meter".into(),
    };
    let mut ctx = MeasureContext {
        meter: &mut meter,
        clock: &SystemClock,
        config: &cfg,
        idle: None,
        cap_requested: false,
        stop: None,
    };
    let m = measure(k.as_mut(), w.flop().unwrap(), &mut ctx).unwrap();
    let shares: Vec<f64> = m.windows.iter().filter_map(|w| w.idle_share).collect();
    assert_eq!(
        shares.len(),
        m.windows.len(),
        "timestamps cover every window"
    );
    let over = shares.iter().any(|&s| s > MAX_IDLE_SHARE);
    assert_eq!(m.flags.contains(&ValidityFlag::IdleInWindow), over);
    shares
}

#[test]
fn pipelined_blocks_keep_the_device_busier_than_serial_ones() {
    let Some(mut b) = backend() else { return };
    if !b.has_device_timer() {
        eprintln!("skipped: this adapter has no timestamp queries");
        return;
    }
    // 64³ has the shortest iterations, so host time between blocks weighs most;
    // the two ways alternate, so both see the machine's load alike
    for n in [64u64] {
        let (mut serial, mut pipelined) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            serial.extend(idle_shares(&mut b, Submission::Serial, n));
            pipelined.extend(idle_shares(&mut b, Submission::Pipelined, n));
        }
        let pct = |v: &[f64]| format!("{:.1}%", 100.0 * median(v));
        eprintln!(
            "wgsl-tiled f32 {n}³ on {}: idle share per window, median: serial {}, pipelined {}",
            b.device().name,
            pct(&serial),
            pct(&pipelined)
        );
        assert!(
            median(&pipelined) < median(&serial),
            "{n}³: pipelined {} against serial {}",
            pct(&pipelined),
            pct(&serial)
        );
    }
}
