//! The flags that price measured energy — a price with its currency, a grid's carbon
//! intensity, a data centre's PUE — checked once for `report` and `compare`.

use crate::args::CostArgs;
use crate::error::{usage, CliError};
use joulebench_analysis::cost::{CostInputs, Price};

fn non_negative(v: Option<f64>, flag: &str) -> Result<Option<f64>, CliError> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => {
            Err(usage(format!("{flag} {x} must be a number ≥ 0")))
        }
        _ => Ok(v),
    }
}

/// The cost flags checked: numbers ≥ 0, a PUE ≥ 1, a currency that names itself.
pub fn cost_inputs(args: &CostArgs) -> Result<CostInputs, CliError> {
    let price = match (non_negative(args.price_per_kwh, "--price-per-kwh")?, &args.currency) {
        (Some(per_kwh), Some(currency)) => {
            let currency = currency.trim();
            if currency.is_empty()
                || currency.chars().count() > 16
                || currency.chars().any(char::is_control)
            {
                return Err(usage(format!(
                    "--currency '{currency}' is not a currency name (USD, EUR, €…)"
                )));
            }
            Some(Price {
                per_kwh,
                currency: currency.to_string(),
            })
        }
        (None, None) => None,
        _ => {
            return Err(usage(
                "--price-per-kwh and --currency go together: a cost is never shown without its currency",
            ))
        }
    };
    let pue = match args.pue {
        Some(p) if !(p.is_finite() && (1.0..=10.0).contains(&p)) => {
            return Err(usage(format!(
                "--pue {p} must be between 1 and 10 (facility energy over IT energy)"
            )))
        }
        p => p,
    };
    Ok(CostInputs {
        price,
        grid_gco2e_per_kwh: non_negative(args.grid_gco2_per_kwh, "--grid-gco2-per-kwh")?,
        pue,
    })
}
