//! `joulebench report` and `joulebench recommend`: read results files and print
//! tables. Both refuse a corrupt or foreign-schema file, naming its line.

use crate::args::{parse_fraction, parse_list, ObjectiveChoice, RecommendArgs, ReportArgs};
use joulebench_core::Precision;
use crate::error::{usage, CliError};
use joulebench_analysis::recommend::{pareto_table, recommend as recommend_settings, recommendation_table, Objective};
use joulebench_analysis::report::{flags_legend, records_table, status_line};
use joulebench_analysis::table::TableFormat;
use joulebench_core::record::{read_many, Record};

fn format(s: &str) -> Result<TableFormat, CliError> {
    s.parse().map_err(usage)
}

pub fn report(args: &ReportArgs) -> Result<(), CliError> {
    let fmt = format(&args.format)?;
    let records = read_many(&args.files).map_err(usage)?;
    let table = records_table(&records);
    match fmt {
        TableFormat::Json => println!("{}", table.render(fmt)),
        TableFormat::Csv => print!("{}", table.render(fmt)),
        _ => {
            println!("{}", status_line(&records));
            println!();
            print!("{}", table.render(fmt));
            println!();
            print!("{}", flags_legend().render(fmt));
        }
    }
    Ok(())
}

pub fn print_recommendation(records: &[Record], objective: Objective, fmt: TableFormat) {
    let recs = recommend_settings(records, objective);
    if recs.is_empty() {
        println!(
            "No recommendation: no measured point has an energy figure ({}). The measured times:",
            status_line(records)
        );
        println!();
        print!("{}", records_table(records).render(fmt));
        return;
    }
    let main = recommendation_table(&recs, objective);
    let front = pareto_table(&recs);
    match fmt {
        TableFormat::Json => {
            let v = serde_json::json!({ "recommendations": serde_json::from_str::<serde_json::Value>(&main.render(fmt)).unwrap_or_default(),
                                        "pareto_front": serde_json::from_str::<serde_json::Value>(&front.render(fmt)).unwrap_or_default() });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        _ => {
            print!("{}", main.render(fmt));
            println!();
            print!("{}", front.render(fmt));
        }
    }
}

pub fn recommend(args: &RecommendArgs) -> Result<(), CliError> {
    let fmt = format(&args.format)?;
    let max_slowdown = parse_fraction(&args.max_slowdown, "--max-slowdown").map_err(usage)?;
    if !(0.0..=1.0).contains(&args.eta) {
        return Err(usage(format!("--eta {} must be between 0 and 1", args.eta)));
    }
    let objective = match args.objective {
        ObjectiveChoice::WithinSlowdown => Objective::WithinSlowdown { max_slowdown },
        ObjectiveChoice::LeastEnergy => Objective::LeastEnergy,
        ObjectiveChoice::EnergyDelay => Objective::EnergyDelay,
        ObjectiveChoice::Zeus => Objective::ZeusCost { eta: args.eta, max_power_w: args.max_power_w },
    };
    let mut records = read_many(&args.files).map_err(usage)?;
    if let Some(list) = &args.precisions {
        let keep = parse_list(list, "precision", |p| p.parse::<Precision>().map_err(|e| e.to_string())).map_err(usage)?;
        records.retain(|r| keep.contains(&r.precision));
    }
    print_recommendation(&records, objective, fmt);
    Ok(())
}
