//! The severity tables Chitti ships, transcribed from their published sources.

use super::{SeverityBasis, SeverityLevel, SeverityTable};

/// Id of the customer's original absolute-temperature table.
pub const UTILITY_ABSOLUTE: &str = "utility-absolute";
/// Id of the NETA table, similar-component column.
pub const NETA_SIMILAR: &str = "neta-similar";
/// Id of the NETA table, ambient-air column.
pub const NETA_AMBIENT: &str = "neta-ambient";
/// Id of the TÜV SÜD temperature-rise table.
pub const TUV: &str = "tuv";
/// Id of the US military thermography scale.
pub const MILITARY: &str = "military";

/// Ids of every built-in table; user tables may not use them.
pub const BUILTIN_TABLE_IDS: [&str; 5] =
    [UTILITY_ABSOLUTE, NETA_SIMILAR, NETA_AMBIENT, TUV, MILITARY];

/// Cool-exception threshold of the built-in tables that may compare against a similar
/// component (`neta-similar`, `tuv`, `military`): 10 °C colder than the reference.
///
/// Sibling phases of a healthy circuit sit within a few degrees of each other; a phase
/// 10 °C colder than its sibling carries little or no current (open circuit, failed
/// fuse, lost load) — and, read the other way round, its sibling would already be
/// "probable deficiency" on `neta-similar`. `neta-ambient` has none: a de-energised
/// component cools *to* ambient, not below it, while outdoor equipment under a clear night
/// sky routinely reads several degrees below air temperature (radiative cooling), so a cool
/// exception over ambient would be a false alarm far more often than an open circuit.
pub const BUILTIN_COOL_EXCEPTION_DELTA_C: f64 = 10.0;

/// Builds a level; ranks are filled in by [`table`].
fn level(name: &str, from_c: f64, inclusive: bool, action: &str) -> SeverityLevel {
    SeverityLevel {
        rank: 0,
        name: name.to_owned(),
        from_c,
        inclusive,
        action: action.to_owned(),
    }
}

fn table(
    id: &str,
    title: &str,
    basis: SeverityBasis,
    levels: Vec<SeverityLevel>,
    cool_exception_delta_c: Option<f64>,
    source: &str,
) -> SeverityTable {
    let levels = levels
        .into_iter()
        .zip(1u8..)
        .map(|(level, rank)| SeverityLevel { rank, ..level })
        .collect();
    SeverityTable {
        id: id.to_owned(),
        version: 1,
        title: title.to_owned(),
        basis,
        levels,
        cool_exception_delta_c,
        source: source.to_owned(),
    }
}

/// The built-in tables, all at version 1, in the order of [`BUILTIN_TABLE_IDS`].
///
/// Published tables print closed integer ranges ("1–3 °C", "4–15 °C") or ranges that share
/// their end points ("1–10", "10–35"); a camera reads a continuous value, so each table
/// below says which side of each printed end point a value exactly on it belongs to.
///
/// - `utility-absolute` (basis `Absolute`; the customer's original specification,
///   "max ≥ 34 / ≥ 54 / ≥ 74 °C"): 1 *attention* from ≥ 34, 2 *serious* from ≥ 54,
///   3 *critical* from ≥ 74 °C. All inclusive, as the specification writes "≥".
/// - `neta-similar` (basis `OverSimilar`; ANSI/NETA MTS/ATS Table 100.18, ΔT between similar
///   components under similar loading; printed 1–3 / 4–15 / > 15 °C): 1 *possible
///   deficiency* from ΔT ≥ 1 (inclusive), 2 *probable deficiency* from ΔT > 3 (exclusive),
///   3 *major discrepancy* from ΔT > 15 (exclusive). Each printed upper bound belongs to its
///   own row (3.0 is still "1–3"), which is what the explicitly exclusive "> 15" of the top
///   row says; the printed gaps (3–4) are closed by extending the lower row up to the next
///   row's exclusive bound.
/// - `neta-ambient` (basis `OverAmbient`; the same table, ΔT over ambient air; printed
///   1–10 / 11–20 / 21–40 / > 40 °C): 1 *possible deficiency* from ≥ 1, 2 *probable
///   deficiency* from > 10, 3 *deficiency* (monitor until corrected) from > 20, 4 *major
///   discrepancy* from > 40; read like `neta-similar` (10.0 is still "1–10").
/// - `tuv` (basis `OverReference`; TÜV SÜD temperature rise; printed 1–10 / 10–35 / 35–75 /
///   ≥ 75 °C): 1 *minor* ≥ 1, 2 *intermediate* ≥ 10, 3 *serious* ≥ 35, 4 *critical* ≥ 75.
///   The ranges share their end points and the top row is "≥ 75", so a shared end point
///   belongs to the higher row: every bound inclusive.
/// - `military` (basis `OverReference`; US military thermography scale in the style of
///   MIL-STD-2194; printed 10–25 / 25–40 / 40–70 / ≥ 70 °C): 1 *routine* ≥ 10,
///   2 *intermediate* ≥ 25, 3 *serious* ≥ 40, 4 *critical* ≥ 70; every bound inclusive, read
///   like the TÜV table.
///
/// `neta-similar`, `tuv` and `military` have a cool exception at
/// [`BUILTIN_COOL_EXCEPTION_DELTA_C`]; `utility-absolute` and `neta-ambient` have none (see
/// that constant for why).
pub fn builtin_tables() -> Vec<SeverityTable> {
    let cool = Some(BUILTIN_COOL_EXCEPTION_DELTA_C);
    vec![
        table(
            UTILITY_ABSOLUTE,
            "Utility absolute temperature (original specification)",
            SeverityBasis::Absolute,
            vec![
                level("attention", 34.0, true, "schedule inspection"),
                level("serious", 54.0, true, "repair soon"),
                level("critical", 74.0, true, "repair immediately"),
            ],
            None,
            "Chitti customer specification: hotspot maximum ≥ 34 / ≥ 54 / ≥ 74 °C",
        ),
        table(
            NETA_SIMILAR,
            "NETA ΔT between similar components under similar loading",
            SeverityBasis::OverSimilar,
            vec![
                level("possible deficiency", 1.0, true, "warrants investigation"),
                level("probable deficiency", 3.0, false, "repair as time permits"),
                level("major discrepancy", 15.0, false, "repair immediately"),
            ],
            cool,
            "ANSI/NETA MTS and ATS, Table 100.18 Thermographic Survey Suggested Actions \
             Based on Temperature Rise (similar components under similar loading)",
        ),
        table(
            NETA_AMBIENT,
            "NETA ΔT over ambient air",
            SeverityBasis::OverAmbient,
            vec![
                level("possible deficiency", 1.0, true, "warrants investigation"),
                level("probable deficiency", 10.0, false, "repair as time permits"),
                level(
                    "deficiency",
                    20.0,
                    false,
                    "monitor until corrective measures can be accomplished",
                ),
                level("major discrepancy", 40.0, false, "repair immediately"),
            ],
            None,
            "ANSI/NETA MTS and ATS, Table 100.18 Thermographic Survey Suggested Actions \
             Based on Temperature Rise (component over ambient air)",
        ),
        table(
            TUV,
            "TÜV SÜD temperature rise",
            SeverityBasis::OverReference,
            vec![
                level(
                    "minor problem",
                    1.0,
                    true,
                    "monitor; repair as part of regular maintenance",
                ),
                level(
                    "intermediate problem",
                    10.0,
                    true,
                    "repair in the near future; monitor load and inspect for physical damage",
                ),
                level(
                    "serious problem",
                    35.0,
                    true,
                    "repair within 1-2 days; inspect surrounding components for damage",
                ),
                level(
                    "critical problem",
                    75.0,
                    true,
                    "repair immediately; re-check with a thermal imager after repair",
                ),
            ],
            cool,
            "TÜV SÜD, Understanding infrared findings: classification by temperature rise \
             (1-10 / 10-35 / 35-75 / ≥ 75 °C)",
        ),
        table(
            MILITARY,
            "US military thermography scale",
            SeverityBasis::OverReference,
            vec![
                level(
                    "routine",
                    10.0,
                    true,
                    "failure unlikely; correct at the next scheduled maintenance",
                ),
                level(
                    "intermediate",
                    25.0,
                    true,
                    "failure probable unless corrected; repair soon",
                ),
                level(
                    "serious",
                    40.0,
                    true,
                    "failure almost certain unless corrected; repair as a priority",
                ),
                level(
                    "critical",
                    70.0,
                    true,
                    "failure imminent; notify operations and repair immediately",
                ),
            ],
            cool,
            "US military infrared thermography severity scale (MIL-STD-2194 style), \
             temperature rise over reference 10-25 / 25-40 / 40-70 / ≥ 70 °C",
        ),
    ]
}
