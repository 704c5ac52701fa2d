use serde_json::json;

use super::*;

/// Reference temperature used to turn a ΔT case into a reading.
const REFERENCE_C: f64 = 20.0;

fn catalog_table(id: &str) -> SeverityTable {
    SeverityCatalog::builtin()
        .get(id)
        .cloned()
        .unwrap_or_else(|| panic!("no built-in table {id}"))
}

fn absolute(max_c: f64) -> SeverityInputs {
    SeverityInputs {
        max_c,
        reference: None,
    }
}

fn over_ambient(delta_c: f64) -> SeverityInputs {
    SeverityInputs {
        max_c: REFERENCE_C + delta_c,
        reference: Some(ReferenceTemperature::ambient(
            REFERENCE_C,
            "camera atmospheric temperature",
        )),
    }
}

fn over_similar(delta_c: f64) -> SeverityInputs {
    SeverityInputs {
        max_c: REFERENCE_C + delta_c,
        reference: Some(ReferenceTemperature::similar_component(
            REFERENCE_C,
            "phase A bushing",
        )),
    }
}

/// Expected level for compared values just below, at and just above every bound, written
/// out by hand from the published tables (not derived from the table data).
const BOUND_CASES: &[(&str, &[(f64, u8)])] = &[
    (
        UTILITY_ABSOLUTE,
        &[
            (33.99, 0),
            (34.0, 1),
            (34.01, 1),
            (53.99, 1),
            (54.0, 2),
            (54.01, 2),
            (73.99, 2),
            (74.0, 3),
            (74.01, 3),
        ],
    ),
    (
        NETA_SIMILAR,
        &[
            (0.99, 0),
            (1.0, 1),
            (1.01, 1),
            (2.99, 1),
            (3.0, 1),
            (3.01, 2),
            (14.99, 2),
            (15.0, 2),
            (15.01, 3),
        ],
    ),
    (
        NETA_AMBIENT,
        &[
            (0.99, 0),
            (1.0, 1),
            (1.01, 1),
            (9.99, 1),
            (10.0, 1),
            (10.01, 2),
            (19.99, 2),
            (20.0, 2),
            (20.01, 3),
            (39.99, 3),
            (40.0, 3),
            (40.01, 4),
        ],
    ),
    (
        TUV,
        &[
            (0.99, 0),
            (1.0, 1),
            (1.01, 1),
            (9.99, 1),
            (10.0, 2),
            (10.01, 2),
            (34.99, 2),
            (35.0, 3),
            (35.01, 3),
            (74.99, 3),
            (75.0, 4),
            (75.01, 4),
        ],
    ),
    (
        MILITARY,
        &[
            (9.99, 0),
            (10.0, 1),
            (10.01, 1),
            (24.99, 1),
            (25.0, 2),
            (25.01, 2),
            (39.99, 2),
            (40.0, 3),
            (40.01, 3),
            (69.99, 3),
            (70.0, 4),
            (70.01, 4),
        ],
    ),
];

/// The readings that give compared value `value` to a table of `basis` (both reference
/// kinds for `OverReference`).
fn readings_for(basis: SeverityBasis, value: f64) -> Vec<SeverityInputs> {
    match basis {
        SeverityBasis::Absolute => vec![absolute(value)],
        SeverityBasis::OverAmbient => vec![over_ambient(value)],
        SeverityBasis::OverSimilar => vec![over_similar(value)],
        SeverityBasis::OverReference => vec![over_ambient(value), over_similar(value)],
    }
}

#[test]
fn every_bound_of_every_builtin_table_gives_the_published_level() {
    for (id, cases) in BOUND_CASES {
        let table = catalog_table(id);
        for &(value, expected) in *cases {
            for inputs in readings_for(table.basis, value) {
                let assessment = table.assess(&inputs);
                assert_eq!(
                    assessment.level, expected,
                    "{id}: compared {value} with {:?}",
                    inputs.reference
                );
                assert!(assessment.is_assessed(), "{id}: {value}");
                assert!(!assessment.cool_exception, "{id}: {value}");
                assert!((assessment.inputs.compared_c - value).abs() < 1e-9);
                match table.level(expected) {
                    Some(level) => {
                        assert_eq!(assessment.level_name, level.name);
                        assert_eq!(assessment.action, level.action);
                    }
                    None => {
                        assert_eq!(expected, 0);
                        assert_eq!(assessment.level_name, NO_LEVEL_NAME);
                        assert_eq!(assessment.action, NO_ACTION);
                    }
                }
            }
        }
    }
}

#[test]
fn bound_cases_cover_every_bound_of_every_builtin_table_and_nothing_else() {
    let catalog = SeverityCatalog::builtin();
    let case_ids: Vec<&str> = BOUND_CASES.iter().map(|(id, _)| *id).collect();
    assert_eq!(catalog.ids().collect::<Vec<_>>().len(), case_ids.len());
    for (id, cases) in BOUND_CASES {
        let table = catalog_table(id);
        let bounds: Vec<f64> = table.levels.iter().map(|level| level.from_c).collect();
        let exact: Vec<f64> = cases
            .iter()
            .map(|(value, _)| *value)
            .filter(|value| bounds.contains(value))
            .collect();
        assert_eq!(exact, bounds, "{id}: every bound exactly once, in order");
        for bound in bounds {
            assert!(cases.iter().any(|(v, _)| (bound - 0.01 - v).abs() < 1e-9));
            assert!(cases.iter().any(|(v, _)| (bound + 0.01 - v).abs() < 1e-9));
        }
    }
}

#[test]
fn builtin_tables_are_valid_version_1_and_cited() {
    let catalog = SeverityCatalog::builtin();
    assert_eq!(
        catalog.ids().collect::<Vec<_>>(),
        vec![
            "military",
            "neta-ambient",
            "neta-similar",
            "tuv",
            "utility-absolute"
        ]
    );
    for table in catalog.tables() {
        assert_eq!(table.validate(), Ok(()), "{}", table.id);
        assert_eq!(table.version, 1);
        assert!(!table.title.is_empty() && !table.source.is_empty());
    }
    let neta = catalog_table(NETA_SIMILAR);
    assert_eq!(neta.basis, SeverityBasis::OverSimilar);
    assert_eq!(neta.levels.len(), 3);
    assert_eq!(neta.levels[2].name, "major discrepancy");
    assert_eq!(neta.levels[2].action, "repair immediately");
    assert_eq!(catalog_table(NETA_AMBIENT).levels.len(), 4);
    assert_eq!(
        catalog_table(NETA_AMBIENT).levels[2].action,
        "monitor until corrective measures can be accomplished"
    );
    assert_eq!(
        catalog_table(UTILITY_ABSOLUTE).basis,
        SeverityBasis::Absolute
    );
    assert_eq!(catalog_table(TUV).basis, SeverityBasis::OverReference);
    assert_eq!(catalog_table(MILITARY).basis, SeverityBasis::OverReference);
}

#[test]
fn delta_tables_without_a_reference_are_not_assessed() {
    for id in [NETA_SIMILAR, NETA_AMBIENT, TUV, MILITARY] {
        let assessment = catalog_table(id).assess(&absolute(150.0));
        assert_eq!(assessment.level, 0, "{id}");
        assert_eq!(assessment.level_name, NO_LEVEL_NAME);
        assert_eq!(assessment.action, NOT_ASSESSED_ACTION);
        assert!(!assessment.is_reportable());
        let reason = assessment.not_assessed.unwrap_or_default();
        assert!(
            reason.contains("no reference temperature was given") && reason.contains(id),
            "{id}: {reason}"
        );
        assert_eq!(assessment.inputs.compared_c, 150.0);
        assert_eq!(assessment.inputs.delta_c, None);
    }
}

#[test]
fn absolute_table_needs_no_reference_and_records_one_when_given() {
    let table = catalog_table(UTILITY_ABSOLUTE);
    let plain = table.assess(&absolute(60.0));
    assert_eq!((plain.level, plain.not_assessed.as_deref()), (2, None));
    assert_eq!(plain.inputs.delta_c, None);

    // A reference does not change what is compared, but is recorded with its ΔT.
    let with_reference = table.assess(&over_similar(40.0));
    assert_eq!(with_reference.level, 2);
    assert_eq!(with_reference.inputs.compared_c, 60.0);
    assert_eq!(with_reference.inputs.delta_c, Some(40.0));
    assert_eq!(
        with_reference.inputs.reference_kind,
        Some(ReferenceKind::SimilarComponent)
    );
    // No cool exception on utility-absolute even far below the reference.
    let cold = table.assess(&over_similar(-30.0));
    assert!(!cold.cool_exception);
    assert_eq!(cold.action, NO_ACTION);
}

#[test]
fn a_reference_of_the_wrong_kind_is_not_assessed() {
    // An ambient ΔT of 12 °C would be "major" nowhere near ambient bounds, "probable" on the
    // similar scale: using it would over-report by a level.
    let similar_given_ambient = catalog_table(NETA_SIMILAR).assess(&over_ambient(12.0));
    assert_eq!(similar_given_ambient.level, 0);
    assert!(!similar_given_ambient.cool_exception);
    let reason = similar_given_ambient
        .not_assessed
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("similar-component reference"), "{reason}");
    assert!(
        reason.contains("camera atmospheric temperature"),
        "{reason}"
    );
    // The rejected reference is still recorded for the report.
    assert_eq!(similar_given_ambient.inputs.reference_c, Some(REFERENCE_C));
    assert_eq!(similar_given_ambient.inputs.delta_c, Some(12.0));

    let ambient_given_similar = catalog_table(NETA_AMBIENT).assess(&over_similar(50.0));
    assert_eq!(ambient_given_similar.level, 0);
    let reason = ambient_given_similar.not_assessed.unwrap_or_default();
    assert!(reason.contains("ambient reference"), "{reason}");
    assert!(reason.contains("phase A bushing"), "{reason}");

    // A wrong-kind reference far colder is not a cool exception either: not assessed.
    let cold = catalog_table(NETA_SIMILAR).assess(&over_ambient(-30.0));
    assert!(!cold.cool_exception);
    assert!(!cold.is_assessed());
}

#[test]
fn non_finite_inputs_are_not_assessed() {
    let table = catalog_table(TUV);
    let nan_max = table.assess(&SeverityInputs {
        max_c: f64::NAN,
        reference: over_ambient(0.0).reference,
    });
    assert_eq!(nan_max.level, 0);
    assert!(nan_max
        .not_assessed
        .unwrap_or_default()
        .contains("maximum temperature"));
    let infinite_reference = table.assess(&SeverityInputs {
        max_c: 90.0,
        reference: Some(ReferenceTemperature::ambient(f64::NEG_INFINITY, "sensor")),
    });
    assert_eq!(infinite_reference.level, 0);
    assert!(infinite_reference
        .not_assessed
        .unwrap_or_default()
        .contains("reference temperature"));
    let absolute_nan = catalog_table(UTILITY_ABSOLUTE).assess(&absolute(f64::NAN));
    assert!(!absolute_nan.is_assessed());
}

#[test]
fn cool_exception_when_far_colder_than_a_similar_component() {
    let table = catalog_table(NETA_SIMILAR);
    assert_eq!(table.cool_exception_delta_c, Some(10.0));

    let at_threshold = table.assess(&over_similar(-10.0));
    assert!(at_threshold.cool_exception, "ΔT = -10 is at the threshold");
    assert_eq!(at_threshold.level, 0);
    assert_eq!(at_threshold.level_name, NO_LEVEL_NAME);
    assert_eq!(at_threshold.action, COOL_EXCEPTION_ACTION);
    assert!(at_threshold.action.starts_with("investigate"));
    assert!(at_threshold.is_assessed() && at_threshold.is_reportable());
    assert_eq!(at_threshold.inputs.compared_c, -10.0);

    let far = table.assess(&over_similar(-25.0));
    assert!(far.cool_exception);

    let not_quite = table.assess(&over_similar(-9.99));
    assert!(!not_quite.cool_exception);
    assert_eq!(not_quite.action, NO_ACTION);
    assert!(!not_quite.is_reportable());
}

#[test]
fn cool_exception_defaults_of_the_builtin_tables() {
    // Over-reference tables: with either kind of reference.
    for id in [TUV, MILITARY] {
        let table = catalog_table(id);
        assert!(table.assess(&over_similar(-10.0)).cool_exception, "{id}");
        assert!(table.assess(&over_ambient(-10.0)).cool_exception, "{id}");
        assert!(!table.assess(&over_ambient(-9.5)).cool_exception, "{id}");
    }
    // neta-ambient has none: a dead component cools to ambient, not below it.
    let ambient = catalog_table(NETA_AMBIENT).assess(&over_ambient(-40.0));
    assert!(!ambient.cool_exception);
    assert_eq!(ambient.level, 0);
    assert_eq!(ambient.action, NO_ACTION);
}

#[test]
fn hysteresis_rises_immediately() {
    let table = catalog_table(UTILITY_ABSOLUTE);
    assert_eq!(
        table.assess_with_hysteresis(&absolute(34.0), 0, 2.0).level,
        1
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(33.9), 0, 2.0).level,
        0
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(74.0), 1, 2.0).level,
        3
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(54.0), 1, 5.0).level,
        2
    );
}

#[test]
fn hysteresis_holds_a_level_within_the_band_and_drops_below_it() {
    let table = catalog_table(UTILITY_ABSOLUTE);
    let held = table.assess_with_hysteresis(&absolute(53.0), 2, 2.0);
    assert_eq!(held.level, 2);
    assert_eq!(held.level_name, "serious");
    assert_eq!(held.action, "repair soon");
    assert_eq!(held.inputs.compared_c, 53.0);
    // Exactly at bound − hysteresis is still held (inclusive bound: drop *below* it).
    assert_eq!(
        table.assess_with_hysteresis(&absolute(52.0), 2, 2.0).level,
        2
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(51.99), 2, 2.0).level,
        1
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(32.0), 1, 2.0).level,
        1
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(31.99), 1, 2.0).level,
        0
    );
    // From 3, a value in level 1's range but within the band of level 2 drops only to 2.
    assert_eq!(
        table.assess_with_hysteresis(&absolute(52.5), 3, 2.0).level,
        2
    );
    assert_eq!(
        table.assess_with_hysteresis(&absolute(72.5), 3, 2.0).level,
        3
    );
    // Far below: straight to what the reading says.
    assert_eq!(
        table.assess_with_hysteresis(&absolute(20.0), 3, 2.0).level,
        0
    );
}

#[test]
fn hysteresis_stops_a_reading_on_a_boundary_from_flapping() {
    let table = catalog_table(UTILITY_ABSOLUTE);
    let readings = [54.1, 53.9, 54.05, 53.5, 53.95, 51.0, 52.5];
    let plain: Vec<u8> = readings
        .iter()
        .map(|&max_c| table.assess(&absolute(max_c)).level)
        .collect();
    assert_eq!(plain, vec![2, 1, 2, 1, 1, 1, 1]);

    let mut previous = 1;
    let damped: Vec<u8> = readings
        .iter()
        .map(|&max_c| {
            previous = table
                .assess_with_hysteresis(&absolute(max_c), previous, 2.0)
                .level;
            previous
        })
        .collect();
    // Holds 2 through the wobble, drops at 51 (< 52), and does not climb back at 52.5.
    assert_eq!(damped, vec![2, 2, 2, 2, 2, 1, 1]);
}

#[test]
fn hysteresis_on_an_exclusive_bound() {
    // neta-similar level 2 starts at ΔT > 3: held while ΔT > 3 − h.
    let table = catalog_table(NETA_SIMILAR);
    assert_eq!(
        table
            .assess_with_hysteresis(&over_similar(2.6), 2, 0.5)
            .level,
        2
    );
    assert_eq!(
        table
            .assess_with_hysteresis(&over_similar(2.5), 2, 0.5)
            .level,
        1
    );
    assert_eq!(
        table
            .assess_with_hysteresis(&over_similar(3.0), 1, 0.5)
            .level,
        1
    );
    assert_eq!(
        table
            .assess_with_hysteresis(&over_similar(3.01), 1, 0.5)
            .level,
        2
    );
}

#[test]
fn hysteresis_edge_cases() {
    let table = catalog_table(UTILITY_ABSOLUTE);
    for value in [20.0, 33.99, 34.0, 53.0, 54.0, 73.99, 74.0, 90.0] {
        let plain = table.assess(&absolute(value));
        for hysteresis_c in [0.0, -3.0, f64::NAN] {
            assert_eq!(
                table.assess_with_hysteresis(&absolute(value), 3, hysteresis_c),
                plain,
                "{value} {hysteresis_c}"
            );
        }
    }
    // A previous level beyond the table is read as its highest level.
    assert_eq!(
        table.assess_with_hysteresis(&absolute(73.0), 9, 2.0).level,
        3
    );
    // Not-assessed and cool-exception readings are never held.
    let neta = catalog_table(NETA_SIMILAR);
    let not_assessed = neta.assess_with_hysteresis(&absolute(80.0), 3, 5.0);
    assert_eq!(not_assessed.level, 0);
    assert!(!not_assessed.is_assessed());
    let cool = neta.assess_with_hysteresis(&over_similar(-12.0), 3, 50.0);
    assert_eq!((cool.level, cool.cool_exception), (0, true));
}

#[test]
fn assessment_json_shape() {
    let assessment = catalog_table(NETA_SIMILAR).assess(&SeverityInputs {
        max_c: 41.5,
        reference: Some(ReferenceTemperature::similar_component(
            30.0,
            "phase A bushing",
        )),
    });
    let expected = json!({
        "table": "neta-similar",
        "table_version": 1,
        "level": 2,
        "level_name": "probable deficiency",
        "action": "repair as time permits",
        "inputs": {
            "max_c": 41.5,
            "reference_c": 30.0,
            "reference_kind": "similar_component",
            "reference_source": "phase A bushing",
            "delta_c": 11.5,
            "compared_c": 11.5
        },
        "cool_exception": false,
        "not_assessed": null
    });
    assert_eq!(
        serde_json::to_value(&assessment).ok(),
        Some(expected.clone())
    );
    let back: SeverityAssessment =
        serde_json::from_value(expected).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(back, assessment);

    let absolute_only = catalog_table(UTILITY_ABSOLUTE).assess(&absolute(80.25));
    assert_eq!(
        serde_json::to_value(&absolute_only).ok(),
        Some(json!({
            "table": "utility-absolute",
            "table_version": 1,
            "level": 3,
            "level_name": "critical",
            "action": "repair immediately",
            "inputs": {
                "max_c": 80.25,
                "reference_c": null,
                "reference_kind": null,
                "reference_source": null,
                "delta_c": null,
                "compared_c": 80.25
            },
            "cool_exception": false,
            "not_assessed": null
        }))
    );

    let not_assessed = catalog_table(NETA_AMBIENT).assess(&absolute(50.0));
    let value = serde_json::to_value(&not_assessed).unwrap_or_default();
    assert_eq!(value["level"], json!(0));
    assert_eq!(value["level_name"], json!("none"));
    assert_eq!(value["action"], json!("not assessed"));
    assert!(value["not_assessed"].is_string());
}

#[test]
fn reference_and_basis_serde_names() {
    assert_eq!(
        serde_json::to_value(ReferenceKind::SimilarComponent).ok(),
        Some(json!("similar_component"))
    );
    assert_eq!(
        serde_json::to_value(ReferenceKind::Ambient).ok(),
        Some(json!("ambient"))
    );
    let bases = [
        (SeverityBasis::Absolute, "absolute"),
        (SeverityBasis::OverAmbient, "over_ambient"),
        (SeverityBasis::OverSimilar, "over_similar"),
        (SeverityBasis::OverReference, "over_reference"),
    ];
    for (basis, name) in bases {
        assert_eq!(serde_json::to_value(basis).ok(), Some(json!(name)));
    }
}

const ACME_TOML: &str = r#"
version = 1

[[table]]
id = "acme-substation"
version = 3
title = "ACME substation practice"
basis = "over_ambient"
cool_exception_delta_c = 8
source = "ACME maintenance manual rev 4"

[[table.level]]
name = "minor"
from_c = 5
action = "note for next outage"

[[table.level]]
name = "major"
from_c = 25.5
inclusive = false
action = "repair this week"

[[table]]
id = "acme-absolute"
version = 1
title = "ACME absolute limits"
basis = "absolute"

[[table.level]]
name = "hot"
from_c = 90
action = "repair immediately"
"#;

fn acme_tables() -> Vec<SeverityTable> {
    parse_user_tables(ACME_TOML).unwrap_or_else(|errors| panic!("{errors}"))
}

#[test]
fn user_tables_parse_with_defaults() {
    let tables = acme_tables();
    assert_eq!(tables.len(), 2);
    let acme = &tables[0];
    assert_eq!(
        acme,
        &SeverityTable {
            id: "acme-substation".into(),
            version: 3,
            title: "ACME substation practice".into(),
            basis: SeverityBasis::OverAmbient,
            levels: vec![
                SeverityLevel {
                    rank: 1,
                    name: "minor".into(),
                    from_c: 5.0,
                    inclusive: true,
                    action: "note for next outage".into(),
                },
                SeverityLevel {
                    rank: 2,
                    name: "major".into(),
                    from_c: 25.5,
                    inclusive: false,
                    action: "repair this week".into(),
                },
            ],
            cool_exception_delta_c: Some(8.0),
            source: "ACME maintenance manual rev 4".into(),
        }
    );
    assert_eq!(tables[1].source, "");
    assert_eq!(tables[1].cool_exception_delta_c, None);

    // The user table behaves like any other.
    assert_eq!(acme.assess(&over_ambient(5.0)).level, 1);
    assert_eq!(acme.assess(&over_ambient(25.5)).level, 1);
    assert_eq!(acme.assess(&over_ambient(25.6)).level, 2);
    assert!(acme.assess(&over_ambient(-8.0)).cool_exception);
    assert!(!acme.assess(&over_similar(30.0)).is_assessed());
}

#[test]
fn user_tables_toml_round_trip() {
    let tables = acme_tables();
    let written = user_tables_to_toml(&tables).unwrap_or_else(|error| panic!("{error}"));
    assert!(written.contains("[[table.level]]"), "{written}");
    assert!(written.starts_with("version = 1"), "{written}");
    let reread = parse_user_tables(&written).unwrap_or_else(|errors| panic!("{errors}\n{written}"));
    assert_eq!(reread, tables);

    // Built-ins written out parse back identically once renamed.
    let mut copy = catalog_table(NETA_SIMILAR);
    copy.id = "my-neta".into();
    let written = user_tables_to_toml([&copy]).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(parse_user_tables(&written), Ok(vec![copy]));
}

#[test]
fn catalog_with_user_tables() {
    let catalog = SeverityCatalog::with_user_tables_toml(ACME_TOML)
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(catalog.ids().count(), BUILTIN_TABLE_IDS.len() + 2);
    assert_eq!(catalog.get("acme-substation").map(|t| t.version), Some(3));
    assert!(catalog.get(NETA_SIMILAR).is_some());
    assert!(catalog.get("nope").is_none());

    // Merging the same file again clashes with the user tables already there, all or none.
    let mut again = catalog.clone();
    let errors = again
        .merge_user_tables_toml(ACME_TOML)
        .err()
        .unwrap_or_else(|| panic!("merge should fail"));
    assert_eq!(errors.paths(), vec!["table[0].id", "table[1].id"]);
    assert!(errors.to_string().contains("already in the catalog"));
    assert_eq!(again, catalog);
}

#[test]
fn catalog_insert_validates_and_never_replaces() {
    let mut catalog = SeverityCatalog::builtin();
    let mut table = acme_tables().remove(0);
    table.id = "site-7".into();
    assert_eq!(catalog.insert(table.clone()), Ok(()));
    assert_eq!(catalog.get("site-7"), Some(&table));

    let errors = catalog.insert(table.clone()).err().map(|e| e.to_string());
    assert_eq!(
        errors.as_deref(),
        Some(r#"table["site-7"].id: a table with id "site-7" is already in the catalog"#)
    );

    let mut builtin_clash = catalog_table(TUV);
    builtin_clash.levels[1].rank = 7;
    builtin_clash.levels[2].from_c = 5.0;
    let errors = catalog
        .insert(builtin_clash)
        .err()
        .unwrap_or_else(|| panic!("insert should fail"));
    assert_eq!(
        errors.paths(),
        vec![
            r#"table["tuv"].level[1].rank"#,
            r#"table["tuv"].level[2].from_c"#,
            r#"table["tuv"].id"#
        ]
    );
    assert_eq!(catalog.get(TUV), Some(&catalog_table(TUV)));
}

#[test]
fn user_tables_report_every_mistake_with_its_key_path() {
    let toml_text = r#"
version = 2

[[table]]
id = "Bad Id"
version = 0
title = " "
basis = "over_similar"
cool_exception_delta_c = -4

[[table.level]]
name = ""
from_c = nan
action = "look"

[[table.level]]
name = "b"
from_c = 10
action = ""

[[table.level]]
name = "c"
from_c = 10
action = "fix"

[[table]]
id = "neta-similar"
version = 1
title = "shadow"
basis = "absolute"

[[table]]
id = "twin"
version = 1
title = "first"
basis = "absolute"
cool_exception_delta_c = inf
[[table.level]]
name = "x"
from_c = 3
action = "y"
[[table.level]]
name = "z"
from_c = 2
action = "w"

[[table]]
id = "twin"
version = 1
title = "second"
basis = "absolute"
[[table.level]]
name = "x"
from_c = 1
action = "y"
"#;
    let errors = parse_user_tables(toml_text)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    let expected = [
        "version: unsupported file version 2 (only 1 is accepted)",
        "table[0].id: invalid id \"Bad Id\": use 1 to 64 characters from a-z, 0-9 and -",
        "table[0].version: must be at least 1",
        "table[0].title: must not be empty",
        "table[0].cool_exception_delta_c: must be greater than 0 (the exception fires at ΔT ≤ -cool_exception_delta_c)",
        "table[0].level[0].name: must not be empty",
        "table[0].level[0].from_c: must be finite",
        "table[0].level[1].action: must not be empty",
        "table[0].level[2].from_c: must be greater than the previous level's from_c (10): bounds must strictly ascend",
        "table[1].level: at least one level is required",
        "table[1].id: \"neta-similar\" is the id of a built-in table; choose another id",
        "table[2].cool_exception_delta_c: must be finite",
        "table[2].level[1].from_c: must be greater than the previous level's from_c (3): bounds must strictly ascend",
        "table[3].id: duplicate id \"twin\" (already used by table[2])",
    ];
    assert_eq!(errors.to_string(), expected.join("\n"));
    assert_eq!(errors.0.len(), expected.len());
    assert!(matches!(
        errors.0[0],
        SeverityConfigError::Invalid {
            problem: ConfigProblem::UnsupportedFileVersion { found: 2 },
            ..
        }
    ));

    // The catalog constructor reports the same list and builds nothing.
    assert_eq!(
        SeverityCatalog::with_user_tables_toml(toml_text),
        Err(errors)
    );
}

#[test]
fn unknown_keys_and_syntax_errors_are_one_positioned_error() {
    let unknown = "version = 1\n[[table]]\nid = \"a\"\nversion = 1\ntitle = \"t\"\nbasis = \"absolute\"\ncolour = \"red\"\n";
    let errors = parse_user_tables(unknown)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(errors.0.len(), 1);
    let message = errors.to_string();
    assert!(message.starts_with("line 7, column 1: "), "{message}");
    assert!(message.contains("unknown field `colour`"), "{message}");
    assert!(!message.contains('\n'), "{message}");

    let unknown_level_key = "version = 1\n[[table]]\nid = \"a\"\nversion = 1\ntitle = \"t\"\nbasis = \"absolute\"\n[[table.level]]\nname = \"n\"\nfrom = 3\naction = \"a\"\n";
    let message = parse_user_tables(unknown_level_key)
        .err()
        .map(|errors| errors.to_string())
        .unwrap_or_default();
    assert!(message.contains("unknown field `from`"), "{message}");

    let bad_basis =
        "version = 1\n[[table]]\nid = \"a\"\nversion = 1\ntitle = \"t\"\nbasis = \"relative\"\n";
    let message = parse_user_tables(bad_basis)
        .err()
        .map(|errors| errors.to_string())
        .unwrap_or_default();
    assert!(message.contains("line 6"), "{message}");
    assert!(message.contains("relative"), "{message}");

    let syntax = "version = 1\n[[table]\n";
    let errors = parse_user_tables(syntax)
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(errors.0.len(), 1);
    assert!(matches!(errors.0[0], SeverityConfigError::Toml(_)));
    assert!(errors.to_string().starts_with("line 2"), "{errors}");

    let missing_version = "[[table]]\nid = \"a\"\n";
    let message = parse_user_tables(missing_version)
        .err()
        .map(|errors| errors.to_string())
        .unwrap_or_default();
    assert!(message.contains("version"), "{message}");
}

#[test]
fn an_empty_file_of_version_1_adds_nothing() {
    assert_eq!(parse_user_tables("version = 1\n"), Ok(vec![]));
    assert_eq!(
        SeverityCatalog::with_user_tables_toml("version = 1\n"),
        Ok(SeverityCatalog::builtin())
    );
}

#[test]
fn ids_are_checked_character_by_character() {
    let file = |id: &str| {
        format!(
            "version = 1\n[[table]]\nid = {id:?}\nversion = 1\ntitle = \"t\"\nbasis = \"absolute\"\n\
             [[table.level]]\nname = \"n\"\nfrom_c = 1\naction = \"a\"\n"
        )
    };
    for good in ["a", "site-7", "0", &"x".repeat(64)] {
        assert!(parse_user_tables(&file(good)).is_ok(), "{good}");
    }
    for bad in ["", "Site", "a_b", "a b", "é", "a/b", "+", &"x".repeat(65)] {
        let errors = parse_user_tables(&file(bad))
            .err()
            .unwrap_or_else(|| panic!("{bad}"));
        assert_eq!(errors.paths(), vec!["table[0].id"], "{bad}");
    }
}

#[test]
fn too_many_levels_is_one_error() {
    let table = SeverityTable {
        id: "long".into(),
        version: 1,
        title: "long".into(),
        basis: SeverityBasis::Absolute,
        levels: (0..300)
            .map(|index| SeverityLevel {
                rank: 0,
                name: "n".into(),
                from_c: f64::from(index),
                inclusive: true,
                action: "a".into(),
            })
            .collect(),
        cool_exception_delta_c: None,
        source: String::new(),
    };
    let errors = table
        .validate()
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(errors.paths(), vec![r#"table["long"].level"#]);
}

#[test]
fn a_zero_cool_exception_threshold_is_rejected() {
    // ΔT ≤ -0 would flag every component at or below its reference.
    let mut table = catalog_table(NETA_SIMILAR);
    table.cool_exception_delta_c = Some(0.0);
    let errors = table.validate().err().map(|errors| errors.to_string());
    assert_eq!(
        errors.as_deref(),
        Some(
            "table[\"neta-similar\"].cool_exception_delta_c: must be greater than 0 \
             (the exception fires at ΔT ≤ -cool_exception_delta_c)"
        )
    );
    table.cool_exception_delta_c = Some(0.5);
    assert_eq!(table.validate(), Ok(()));
}
