//! The ways a real card's readings and pace differ from an ideal device, each a
//! parameter of a simulated profile, so that each can be turned off alone: a test
//! that a protocol safeguard works needs the imperfection it guards against, and a
//! test of something else may want it gone. `Imperfections::IDEAL` turns them all
//! off; `Imperfections::REALISTIC` holds the defaults of every profile.

/// Where the power sensor's averaging slice sits against the counter's updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SensorPhase {
    /// Each slice ends exactly on the update that books it.
    AlignedToUpdates,
    /// The sensor converts on its own cadence (the update period, no jitter): its
    /// first slice ends `first_slice_end_s` after the device starts, and each slice
    /// reaches the counter `latency_s` after it ends. An update books the latest
    /// slice that has reached it, so what it books may have ended up to
    /// `latency_s` + a period before it.
    Fixed {
        first_slice_end_s: f64,
        latency_s: f64,
    },
    /// As `Fixed`, both drawn from the board's seed — the first slice's end within a
    /// period, the latency under a period less the slice: aligned to nothing the
    /// host or the work does.
    PerBoard,
}

/// The idle host time between two blocks of work, as a backend's host loop spends
/// it while the device waits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostGaps {
    /// Once per block: the sync that waits for the block and reads its timer.
    pub per_block_s: f64,
    /// Once per iteration of the block, with the device idle: encoding a dispatch
    /// before the block is submitted (wgpu), 0 where launches overlap the work (CUDA).
    pub per_iteration_s: f64,
}

impl HostGaps {
    pub const NONE: HostGaps = HostGaps {
        per_block_s: 0.0,
        per_iteration_s: 0.0,
    };
    /// A CUDA stream sync and an event read after each block.
    pub const CUDA: HostGaps = HostGaps {
        per_block_s: 20e-6,
        per_iteration_s: 0.0,
    };
    /// wgpu submitting serially: each dispatch encoded before the submit, then the
    /// submit, the timestamp resolve and the read-back (the wgpu backend now
    /// pipelines its blocks, which leaves about a CUDA sync's gap).
    pub const WGPU: HostGaps = HostGaps {
        per_block_s: 300e-6,
        per_iteration_s: 2e-6,
    };

    /// The idle host time after a block of `iterations`.
    pub fn after_block_s(&self, iterations: u64) -> f64 {
        self.per_block_s + self.per_iteration_s * iterations as f64
    }
}

/// A card that slows its clock when its die runs hot (NVML's `hw-thermal-slowdown`):
/// from `at_c` until it has cooled to `release_c`, the SM clock is held at or under
/// `clock_fraction` of its maximum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThermalSlowdown {
    pub at_c: f64,
    pub release_c: f64,
    pub clock_fraction: f64,
}

/// How a simulated card's readings and pace differ from an ideal device's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Imperfections {
    /// The meter's polling thread checks the counter this often: an update is
    /// stamped up to this late (uniformly).
    pub poll_interval_s: f64,
    /// A telemetry query (clocks, temperature, power, throttle reasons) holds the
    /// polling thread this long, every telemetry period: an update that falls inside
    /// it is stamped when the query returns.
    pub telemetry_call_s: f64,
    /// Each counter update period is the nominal one plus N(0, σ) with this σ, and
    /// the deviations accumulate (a firmware loop that reschedules itself).
    pub period_jitter_s: f64,
    /// Where the sensor's slices sit against the updates.
    pub sensor_phase: SensorPhase,
    /// The power limiter moves the SM clock in bins of this many MHz (0: any clock).
    pub limiter_bin_mhz: u32,
    /// It decides every this many seconds …
    pub limiter_period_s: f64,
    /// … between a bin this many bins below the clock that fits the limit and one
    /// as far above it, so that the board oscillates around the limit and the pace
    /// of the work changes within a block; the time-average power is the limit.
    pub limiter_swing_bins: u32,
    /// The idle host time between blocks.
    pub host_gaps: HostGaps,
    /// The counter and the power readings read this fraction above the power the
    /// board really draws (the limiter holds the real power at the limit). No
    /// protocol can remove it: a measurement is only as right as the board's sensor.
    pub counter_gain_error: f64,
    /// Boards other than the first of a node read with a gain error spread
    /// uniformly ± this around `counter_gain_error` (each board's own, fixed).
    pub board_gain_spread: f64,
    /// Multi-phase kernels (attention from GEMMs and a softmax pass) run their
    /// phases in turn within each iteration, at the power of each, instead of at
    /// their average power.
    pub kernel_phases: bool,
    /// A thermal slowdown (none on the built-in profiles: their cooling keeps them
    /// under it; tests give one to a card to throttle it).
    pub thermal_slowdown: Option<ThermalSlowdown>,
}

impl Imperfections {
    /// An ideal device: exact stamps on an exact period, the sensor's slice at the
    /// end of each period, a continuous clock at exactly the limit, no host gaps,
    /// no gain error, even power within an iteration. (Temperatures are whole °C
    /// on every meter, as NVML reports them.)
    pub const IDEAL: Imperfections = Imperfections {
        poll_interval_s: 0.0,
        telemetry_call_s: 0.0,
        period_jitter_s: 0.0,
        sensor_phase: SensorPhase::AlignedToUpdates,
        limiter_bin_mhz: 0,
        limiter_period_s: 0.002,
        limiter_swing_bins: 0,
        host_gaps: HostGaps::NONE,
        counter_gain_error: 0.0,
        board_gain_spread: 0.0,
        kernel_phases: false,
        thermal_slowdown: None,
    };

    /// What every profile does by default. The polling thread of joulebench's NVML
    /// meter checks the counter every millisecond, and a round of telemetry queries
    /// holds it for about 3 ms; the SM clock moves in 15 MHz steps (the supported
    /// clocks of the GH100 parts), a few milliseconds apart; the sensor's phase is
    /// the board's own; the host syncs as CUDA does. The gain error is each
    /// profile's own (see the profiles).
    pub const REALISTIC: Imperfections = Imperfections {
        poll_interval_s: 0.001,
        telemetry_call_s: 0.003,
        period_jitter_s: 0.0005,
        sensor_phase: SensorPhase::PerBoard,
        limiter_bin_mhz: 15,
        limiter_period_s: 0.002,
        limiter_swing_bins: 1,
        host_gaps: HostGaps::CUDA,
        counter_gain_error: 0.0,
        board_gain_spread: 0.02,
        kernel_phases: true,
        thermal_slowdown: None,
    };
}
