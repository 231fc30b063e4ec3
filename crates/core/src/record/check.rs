//! Whether a record's numbers can be a measurement's (docs/ARCHITECTURE.md §5): every
//! reader refuses energy, time or power no measurement produces, and numbers that
//! contradict each other, naming the line — a damaged or forged record is an error,
//! never the first row of a ranking.

use super::schema::{PointStatus, Record};
use crate::workload::Workload;

impl Record {
    /// Refuses numbers no measurement produces — energy, time or power that is
    /// negative or not finite, a measured point of 0 FLOP — so a damaged or forged
    /// record is an error naming its line, not the first row of a ranking.
    pub fn check_numbers(&self) -> Result<(), String> {
        fn check(what: &str, v: f64, zero_ok: bool) -> Result<(), String> {
            if v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) {
                Ok(())
            } else {
                Err(format!(
                    "{what} = {v} cannot come from a measurement (it must be finite and {})",
                    if zero_ok { "≥ 0" } else { "> 0" }
                ))
            }
        }
        if self.status == PointStatus::Measured && self.flop == 0 {
            return Err("a measured point of 0 FLOP cannot have an energy per FLOP".into());
        }
        let cap = &self.power_cap;
        for (what, v) in [
            ("power_cap.requested_w", cap.requested_w),
            ("power_cap.enforced_w", cap.enforced_w),
            ("power_cap.default_w", cap.default_w),
        ] {
            if let Some(v) = v {
                check(what, v, false)?;
            }
        }
        if let Some(idle) = &self.idle {
            check("idle.watts", idle.watts, true)?;
        }
        if let Some(m) = &self.measurement {
            let s = &m.summary;
            check("summary.seconds_per_op", s.seconds_per_op.median, false)?;
            check("summary.tflops", s.tflops, true)?;
            if let Some(j) = &s.joules_per_op {
                check("summary.joules_per_op", j.median, false)?;
            }
            if let Some(j) = &s.joules_per_flop {
                check("summary.joules_per_flop", j.median, false)?;
            }
            if let Some(w) = s.average_w {
                check("summary.average_w", w, true)?;
            }
        }
        self.check_consistency()
    }

    /// Refuses numbers that contradict each other: a FLOP count that is not the
    /// shape's, windows with negative energy or no work, a summary that no central
    /// value of its own windows gives, an energy per FLOP that is not the energy per
    /// op over the FLOP. Each alone looks plausible; together they cannot all be a
    /// measurement's.
    fn check_consistency(&self) -> Result<(), String> {
        if let Ok(shape_flop) = self.workload.flop() {
            if shape_flop != self.flop
                && self.status == PointStatus::Measured
                && Some(self.flop) != half_product_causal_flop(&self.workload)
            {
                return Err(format!(
                    "flop = {} but the workload's shape makes {shape_flop}: the record contradicts itself",
                    self.flop
                ));
            }
        }
        let Some(m) = &self.measurement else {
            return Ok(());
        };
        if m.windows.is_empty() {
            return Err("a measurement without windows cannot have a summary".into());
        }
        for (i, w) in m.windows.iter().enumerate() {
            let bad = |what: &str, v: f64| {
                format!("windows[{i}].{what} = {v} cannot come from a measurement")
            };
            if !(w.iterations.is_finite() && w.iterations > 0.0) {
                return Err(bad("iterations", w.iterations));
            }
            if !(w.seconds.is_finite() && w.seconds > 0.0) {
                return Err(bad("seconds", w.seconds));
            }
            if let Some(j) = w.joules {
                if !(j.is_finite() && j >= 0.0) {
                    return Err(bad("joules", j));
                }
            }
        }
        let s = &m.summary;
        // any median, mean or trimmed value of the windows lies within their range
        let within = |what: &str, median: f64, values: &[f64]| -> Result<(), String> {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let slack = 1e-6 * hi.abs().max(lo.abs());
            if median < lo - slack || median > hi + slack {
                return Err(format!(
                    "summary.{what} = {median:e} lies outside its windows' {lo:e} to {hi:e}: the \
                     record contradicts itself"
                ));
            }
            Ok(())
        };
        // per window on the summary's own time base: records written before one time
        // base summarised device time where the backend had it
        let spo: Vec<f64> = m
            .windows
            .iter()
            .map(|w| match s.time_base {
                crate::protocol::TimeBase::Device => {
                    w.device_s.or(w.busy_s).unwrap_or(w.seconds) / w.iterations
                }
                crate::protocol::TimeBase::Window => w.seconds_per_op(),
            })
            .collect();
        within("seconds_per_op", s.seconds_per_op.median, &spo)?;
        let idle_w = self.idle.map(|i| i.watts);
        let jpo: Option<Vec<f64>> = m.windows.iter().map(|w| w.joules_per_op(idle_w)).collect();
        match (&s.joules_per_op, jpo) {
            (Some(j), Some(values)) => within("joules_per_op", j.median, &values)?,
            (Some(_), None) => {
                return Err(
                    "summary.joules_per_op is given but a window has no energy: the record \
                     contradicts itself"
                        .into(),
                )
            }
            _ => {}
        }
        if let (Some(jpo), Some(jpf)) = (&s.joules_per_op, &s.joules_per_flop) {
            if self.flop > 0 {
                let expect = jpo.median / self.flop as f64;
                if (jpf.median - expect).abs() > 1e-6 * expect.abs().max(f64::MIN_POSITIVE) {
                    return Err(format!(
                        "summary.joules_per_flop = {:e} is not joules_per_op / flop = {expect:e}: \
                         the record contradicts itself",
                        jpf.median
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Causal attention as records before the exact count of visible pairs counted it:
/// half the unmasked product. Such records are whole, not contradictory.
fn half_product_causal_flop(workload: &Workload) -> Option<u64> {
    let unmasked = |s: &crate::workload::AttentionShape| crate::workload::AttentionShape {
        causal: false,
        ..*s
    };
    match workload {
        Workload::Attention(s) if s.causal => {
            Workload::Attention(unmasked(s)).flop().ok().map(|f| f / 2)
        }
        Workload::AttentionBackward(s) if s.causal => Workload::AttentionBackward(unmasked(s))
            .flop()
            .ok()
            .map(|f| f / 2),
        _ => None,
    }
}
