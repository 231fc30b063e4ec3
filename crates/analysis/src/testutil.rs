//! Hand-made records for the analysis tests: every figure is chosen by the test,
//! so each objective, ranking and sum has an answer known before it runs.

use joulebench_core::device::DeviceInfo;
use joulebench_core::meter::MeterSource;
use joulebench_core::protocol::{Measurement, Summary, TelemetrySummary, TimeBase, WindowMethod};
use joulebench_core::record::{MeterInfo, PointStatus, PowerCapRecord, Record, ToolInfo};
use joulebench_core::stats::Stat;
use joulebench_core::{MatmulShape, PowerCap, Precision, ProtocolConfig, Workload, SCHEMA_VERSION};

fn stat(x: f64) -> Stat {
    Stat {
        median: x,
        rel_spread: 0.001,
        min: x,
        max: x,
    }
}

/// A measured 1024³ matmul record. `cap`: "default" or "N%" of a 700 W default limit.
pub fn rec(
    device: &str,
    simulated: bool,
    precision: Precision,
    cap: &str,
    tflops: f64,
    pj_per_flop: f64,
) -> Record {
    let workload = Workload::Matmul(MatmulShape {
        batch: 1,
        m: 1024,
        n: 1024,
        k: 1024,
    });
    let flop = 2 * 1024u64 * 1024 * 1024;
    let requested: PowerCap = cap.parse().expect("test cap");
    let default_w = 700.0;
    let cap_w = match requested {
        PowerCap::Default => default_w,
        PowerCap::Watts(w) => w,
        PowerCap::PercentOfDefault(p) => default_w * p / 100.0,
    };
    let seconds_per_op = flop as f64 / (tflops * 1e12);
    let joules_per_op = pj_per_flop * 1e-12 * flop as f64;
    Record {
        schema: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "joulebench".into(),
            version: "0.1.0".into(),
            git_commit: None,
        },
        host: "test-host".into(),
        unix_time_s: 1.7e9,
        command: format!("joulebench sweep --device {device}"),
        simulated,
        status: PointStatus::Measured,
        reason: None,
        device: DeviceInfo {
            name: device.into(),
            uuid: Some(format!("GPU-{device}")),
            simulated,
            ..DeviceInfo::default()
        },
        backend: "test".into(),
        kernel: "k".into(),
        kernel_variant: None,
        vendor_kernel: false,
        precision,
        workload,
        group: workload.shape_label(),
        batch_size: 1,
        seed: 1,
        inputs: Default::default(),
        flop,
        min_bytes: 3 * 1024 * 1024 * 2,
        power_cap: PowerCapRecord {
            requested,
            requested_w: (!requested.is_default()).then_some(cap_w),
            enforced_w: Some(cap_w),
            default_w: Some(default_w),
        },
        meter: MeterInfo {
            source: if simulated {
                MeterSource::Simulated
            } else {
                MeterSource::NvmlCounter
            },
            update_period_s: 0.1,
            check: None,
            host: None,
        },
        idle: None,
        verification: None,
        measurement: Some(Measurement {
            method: WindowMethod::Busy,
            warmup_s: 1.0,
            warmup_iterations: 1,
            warmup_settled: Some(true),
            window_target_s: 1.0,
            windows: vec![],
            summary: Summary {
                seconds_per_op: stat(seconds_per_op),
                tflops,
                time_base: TimeBase::Window,
                device_seconds_per_op: None,
                device_tflops: None,
                joules_per_op: Some(stat(joules_per_op)),
                joules_per_flop: Some(stat(pj_per_flop * 1e-12)),
                above_idle_joules_per_op: None,
                average_w: Some(joules_per_op / seconds_per_op),
                host: None,
            },
            telemetry: TelemetrySummary::default(),
            flags: vec![],
            stop: None,
            update_times: Default::default(),
            throttled_windows_dropped: 0,
            cooldown_s: 0.0,
            besides_kernel: None,
        }),
        flags: vec![],
        protocol: ProtocolConfig::default(),
        repeat: None,
        overhead: None,
        clocks: Default::default(),
    }
}

/// [`rec`] of `kernel` (a vendor library's if `vendor`) on workload `group`, its SM
/// clock locked at `clock.0` MHz and seen at `clock.1` MHz where given.
#[allow(clippy::too_many_arguments)]
pub fn rec_of(
    kernel: &str,
    vendor: bool,
    precision: Precision,
    cap: &str,
    clock: Option<(u32, f64)>,
    tflops: f64,
    pj_per_flop: f64,
) -> Record {
    let mut r = rec("GPU A", false, precision, cap, tflops, pj_per_flop);
    r.kernel = kernel.into();
    r.vendor_kernel = vendor;
    r.clocks.sm_max_mhz = Some(1980);
    if let Some((asked, seen)) = clock {
        r.clocks.sm_requested_mhz = Some(asked);
        r.clocks.sm_seen_mhz_median = Some(seen);
    }
    r
}

/// `r` as a matmul of `m` rows (another workload; its figures are kept as given).
pub fn on_workload(mut r: Record, m: u64) -> Record {
    r.workload = Workload::Matmul(MatmulShape {
        batch: 1,
        m,
        n: 1024,
        k: 1024,
    });
    r.group = r.workload.shape_label();
    r
}
