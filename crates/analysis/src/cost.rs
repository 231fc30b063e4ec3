//! What energy costs a hardware review: kWh at the facility (the GPU board's energy
//! times the data centre's PUE), money at a price per kWh in a named currency, and
//! CO₂e at a grid's carbon intensity — per 10¹⁸ FLOP for an op, per million tokens
//! for a model's training step. One home for the arithmetic and its wording, so the
//! report and the comparison say the same thing.

use crate::format::sig;

const JOULES_PER_KWH: f64 = 3.6e6;
const FLOP_PER_EXAFLOP: f64 = 1e18;
const TOKENS_PER_MILLION: f64 = 1e6;

/// kWh that 10¹⁸ FLOP take at this many joules per FLOP (the board's alone).
pub fn kwh_per_exaflop(joules_per_flop: f64) -> f64 {
    joules_per_flop * FLOP_PER_EXAFLOP / JOULES_PER_KWH
}

/// What 10¹⁸ FLOP cost at `price_per_kwh` (the board's energy alone).
pub fn cost_per_exaflop(joules_per_flop: f64, price_per_kwh: f64) -> f64 {
    kwh_per_exaflop(joules_per_flop) * price_per_kwh
}

/// Kilograms CO₂e that 10¹⁸ FLOP emit on a grid of `gco2e_per_kwh` (the board's alone).
pub fn kg_co2e_per_exaflop(joules_per_flop: f64, gco2e_per_kwh: f64) -> f64 {
    kwh_per_exaflop(joules_per_flop) * gco2e_per_kwh / 1000.0
}

/// A price per kWh and the currency it is in: a cost is never shown without it.
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    pub per_kwh: f64,
    /// "USD", "EUR", "€"…
    pub currency: String,
}

/// What turns board energy into facility energy, money and carbon; each optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostInputs {
    pub price: Option<Price>,
    /// Grid carbon intensity, grams CO₂e per kWh.
    pub grid_gco2e_per_kwh: Option<f64>,
    /// Power usage effectiveness: facility energy over IT energy (≥ 1). `None`: the
    /// board's energy alone (PUE 1, no cooling or power delivery).
    pub pue: Option<f64>,
}

/// The figures a unit of work (10¹⁸ FLOP, 10⁶ tokens) costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// At the facility: board energy × PUE.
    pub kwh: f64,
    pub money: Option<f64>,
    pub kg_co2e: Option<f64>,
}

/// What the costs are per, for headers: "10¹⁸ FLOP", "10⁶ tokens".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    ExaFlop,
    MillionTokens,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::ExaFlop => "10¹⁸ FLOP",
            Unit::MillionTokens => "10⁶ tokens",
        }
    }
}

impl CostInputs {
    pub fn pue_factor(&self) -> f64 {
        self.pue.unwrap_or(1.0)
    }

    /// Whether anything beyond kWh is asked for.
    pub fn priced(&self) -> bool {
        self.price.is_some() || self.grid_gco2e_per_kwh.is_some()
    }

    fn of_kwh(&self, board_kwh: f64) -> Costs {
        let kwh = board_kwh * self.pue_factor();
        Costs {
            kwh,
            money: self.price.as_ref().map(|p| kwh * p.per_kwh),
            kg_co2e: self.grid_gco2e_per_kwh.map(|g| kwh * g / 1000.0),
        }
    }

    /// 10¹⁸ FLOP at `joules_per_flop` of the board.
    pub fn per_exaflop(&self, joules_per_flop: f64) -> Costs {
        self.of_kwh(kwh_per_exaflop(joules_per_flop))
    }

    /// 10⁶ tokens at `joules_per_token` of the board.
    pub fn per_million_tokens(&self, joules_per_token: f64) -> Costs {
        self.of_kwh(joules_per_token * TOKENS_PER_MILLION / JOULES_PER_KWH)
    }

    /// Column headers of [`Self::cells`], in order.
    pub fn headers(&self, unit: Unit) -> Vec<String> {
        let u = unit.name();
        let mut h = vec![match self.pue {
            Some(p) => format!("energy at PUE {} (kWh per {u})", sig(p, 3)),
            None => format!("energy (kWh per {u})"),
        }];
        if let Some(p) = &self.price {
            h.push(format!("cost ({} per {u})", p.currency));
        }
        if self.grid_gco2e_per_kwh.is_some() {
            h.push(format!("CO₂e (kg per {u})"));
        }
        h
    }

    pub fn cells(&self, c: &Costs) -> Vec<String> {
        let mut v = vec![sig(c.kwh, 3)];
        if let Some(m) = c.money {
            v.push(sig(m, 3));
        }
        if let Some(kg) = c.kg_co2e {
            v.push(sig(kg, 3));
        }
        v
    }

    /// What the figures assume, for a table's notes.
    pub fn note(&self) -> String {
        let mut parts = vec![match self.pue {
            Some(p) => format!(
                "energy is the GPU board's times a PUE of {} (the facility's cooling and power delivery), \
                 no host CPU or DRAM",
                sig(p, 3)
            ),
            None => "energy is the GPU board's alone (PUE 1: no cooling, power delivery, host CPU or DRAM; \
                     --pue adds the facility's share)"
                .to_string(),
        }];
        if let Some(p) = &self.price {
            parts.push(format!("cost at {} {} per kWh", p.per_kwh, p.currency));
        }
        if let Some(g) = self.grid_gco2e_per_kwh {
            parts.push(format!("CO₂e at a grid intensity of {g} g per kWh"));
        }
        let mut note = parts.join("; ");
        note.push_str("; kWh per 10¹⁸ FLOP = J/FLOP × 10¹⁸ / 3.6×10⁶.");
        if !self.priced() {
            note.push_str(
                " --price-per-kwh with --currency, and --grid-gco2-per-kwh, add cost and CO₂e.",
            );
        }
        let mut c = note.chars();
        match c.next() {
            Some(first) => first.to_uppercase().chain(c).collect(),
            None => note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exaflop_arithmetic() {
        // 1 pJ/FLOP × 10¹⁸ FLOP = 10⁶ J = 0.2778 kWh
        let j = 1e-12;
        assert!((kwh_per_exaflop(j) - 1e6 / 3.6e6).abs() < 1e-12);
        // at 0.30 per kWh: 0.08333
        assert!((cost_per_exaflop(j, 0.30) - 0.083_333_333).abs() < 1e-8);
        // at 400 g/kWh: 0.2778 kWh × 0.4 kg = 0.1111 kg
        assert!((kg_co2e_per_exaflop(j, 400.0) - 0.111_111_111).abs() < 1e-8);
    }

    #[test]
    fn pue_scales_energy_cost_and_carbon_and_every_header_names_its_unit() {
        let c = CostInputs {
            price: Some(Price {
                per_kwh: 0.30,
                currency: "USD".into(),
            }),
            grid_gco2e_per_kwh: Some(400.0),
            pue: Some(1.2),
        };
        // 1 pJ/FLOP: 0.2778 kWh at the board, 0.3333 at the facility
        let e = c.per_exaflop(1e-12);
        assert!((e.kwh - 1.2 / 3.6).abs() < 1e-12);
        assert!((e.money.unwrap() - 0.1).abs() < 1e-12);
        assert!((e.kg_co2e.unwrap() - 0.4 / 3.0).abs() < 1e-12);
        // 3.6 J/token: 1 kWh per 10⁶ tokens at the board, 1.2 at the facility
        let t = c.per_million_tokens(3.6);
        assert!((t.kwh - 1.2).abs() < 1e-12);
        assert_eq!(
            c.headers(Unit::MillionTokens),
            [
                "energy at PUE 1.20 (kWh per 10⁶ tokens)",
                "cost (USD per 10⁶ tokens)",
                "CO₂e (kg per 10⁶ tokens)"
            ]
        );
        assert_eq!(c.cells(&e), ["0.333", "0.100", "0.133"]);
        assert!(c.note().contains("PUE of 1.20") && c.note().contains("0.3 USD per kWh"));
        let plain = CostInputs::default();
        assert_eq!(plain.headers(Unit::ExaFlop), ["energy (kWh per 10¹⁸ FLOP)"]);
        assert!(plain.note().contains("--price-per-kwh"), "{}", plain.note());
    }
}
