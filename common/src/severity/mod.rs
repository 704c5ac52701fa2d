//! Severity tables: how serious is a hotspot, and what should the crew do about it?
//!
//! A [`SeverityTable`] turns one hotspot reading ([`SeverityInputs`]: the hotspot's maximum
//! °C and, optionally, a [`ReferenceTemperature`]) into a [`SeverityAssessment`]: a level
//! (0 = nothing to report, then 1, 2, … rising), the level's name, the recommended action,
//! and the inputs it used. The assessment travels inside a Finding, so a report can always
//! say *which* table (id and version) produced a level and *from what* numbers.
//!
//! # Bases
//! A table compares one value against its level bounds; [`SeverityBasis`] says which:
//! - [`SeverityBasis::Absolute`]: the hotspot's max °C itself (the customer's original
//!   specification, `utility-absolute`).
//! - [`SeverityBasis::OverAmbient`]: ΔT = max − ambient air (`neta-ambient`).
//! - [`SeverityBasis::OverSimilar`]: ΔT = max − a similar component under similar load,
//!   typically a sibling phase (`neta-similar`).
//! - [`SeverityBasis::OverReference`]: ΔT over whichever reference was measured, ambient or
//!   similar component (`tuv`, `military`: those scales are published as a "temperature
//!   rise" without fixing the reference).
//!
//! # Invariants
//! - **A ΔT table never guesses its reference.** With no reference, or with a reference of
//!   the wrong kind (an ambient reading given to `neta-similar`, a sibling phase given to
//!   `neta-ambient`), the assessment is level 0 with [`SeverityAssessment::not_assessed`]
//!   saying why. The NETA ambient bounds are several times wider than the similar-component
//!   ones (major at > 40 °C over ambient, > 15 °C over a sibling), so substituting one
//!   reference for the other would under- or over-report by whole levels. A reference given
//!   to an `Absolute` table is not compared, but is still recorded (with its ΔT) and used for
//!   the cool exception when the table has one.
//! - **Non-finite inputs are not assessed** (a NaN max °C or reference): level 0 and a
//!   reason, never a level computed from garbage.
//! - **Bounds are lower bounds and strictly ascend.** A level applies when the compared value
//!   is ≥ its `from_c` (inclusive) or > `from_c` (exclusive); the highest applying level
//!   wins. Level `rank`s are 1, 2, … in table order ([`SeverityTable::validate`] checks
//!   both). How each built-in table's printed ranges map onto inclusive/exclusive bounds is
//!   documented on [`builtin_tables`].
//! - **Cool exception before levels.** When the table has
//!   [`SeverityTable::cool_exception_delta_c`] = `Some(d)` and an accepted reference gives
//!   ΔT ≤ −d, the component is far colder than its reference (open circuit, lost load): the
//!   assessment is level 0 with `cool_exception: true` and an "investigate" action — a
//!   finding of its own, not "nothing to report".
//! - **Hysteresis only holds levels down, never up.**
//!   [`SeverityTable::assess_with_hysteresis`] rises as soon as a bound is crossed, and
//!   keeps a previous level `k` while the compared value is within `hysteresis_c` below
//!   level `k`'s bound. Cool exceptions and not-assessed readings are never held.
//! - **User tables cannot shadow built-ins.** A user table (TOML, see [`parse_user_tables`])
//!   must pick its own id; a finding that says `neta-similar` v1 always means the table
//!   shipped here.
//!
//! The module is pure: no IO; callers hand in TOML text.

mod builtin;
mod user;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use builtin::{
    builtin_tables, BUILTIN_COOL_EXCEPTION_DELTA_C, BUILTIN_TABLE_IDS, MILITARY, NETA_AMBIENT,
    NETA_SIMILAR, TUV, UTILITY_ABSOLUTE,
};
pub use user::{
    parse_user_tables, user_tables_to_toml, ConfigProblem, SeverityConfigError,
    SeverityConfigErrors, USER_TABLES_FILE_VERSION,
};

/// `level_name` of an assessment at level 0.
pub const NO_LEVEL_NAME: &str = "none";

/// `action` of an assessed reading below the table's first level.
pub const NO_ACTION: &str = "no action";

/// `action` of a reading that could not be assessed (see `not_assessed` for why).
pub const NOT_ASSESSED_ACTION: &str = "not assessed";

/// `action` of a cool exception.
pub const COOL_EXCEPTION_ACTION: &str =
    "investigate: component far colder than its reference (possible open circuit or loss of load)";

/// What a [`ReferenceTemperature`] is the temperature of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReferenceKind {
    /// The ambient air around the component.
    Ambient,
    /// A similar component under similar load, e.g. the same bushing on a sibling phase.
    SimilarComponent,
}

/// The temperature a hotspot is compared against, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceTemperature {
    /// The reference temperature, °C.
    pub celsius: f64,
    /// What the reference is the temperature of.
    pub kind: ReferenceKind,
    /// Free text saying where the value came from, e.g. "camera atmospheric temperature",
    /// "user --reference", "phase A bushing".
    pub source: String,
}

impl ReferenceTemperature {
    /// An ambient-air reference.
    pub fn ambient(celsius: f64, source: impl Into<String>) -> Self {
        Self {
            celsius,
            kind: ReferenceKind::Ambient,
            source: source.into(),
        }
    }

    /// A similar-component reference (a sibling phase, a twin connector).
    pub fn similar_component(celsius: f64, source: impl Into<String>) -> Self {
        Self {
            celsius,
            kind: ReferenceKind::SimilarComponent,
            source: source.into(),
        }
    }
}

/// Which value a table compares against its level bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityBasis {
    /// The hotspot's max °C; no reference needed.
    Absolute,
    /// ΔT = max − an [`ReferenceKind::Ambient`] reference.
    OverAmbient,
    /// ΔT = max − a [`ReferenceKind::SimilarComponent`] reference.
    OverSimilar,
    /// ΔT = max − a reference of either kind.
    OverReference,
}

impl SeverityBasis {
    /// Whether the table compares a ΔT, and so cannot assess without a reference.
    pub fn needs_reference(self) -> bool {
        !matches!(self, Self::Absolute)
    }

    /// Whether a reference of `kind` may be used by a table of this basis (for the ΔT it
    /// compares, and for the cool exception). An `Absolute` table accepts any reference for
    /// its cool exception.
    pub fn accepts(self, kind: ReferenceKind) -> bool {
        match self {
            Self::Absolute | Self::OverReference => true,
            Self::OverAmbient => kind == ReferenceKind::Ambient,
            Self::OverSimilar => kind == ReferenceKind::SimilarComponent,
        }
    }

    /// What the compared value is, in words, for messages.
    fn describe(self) -> &'static str {
        match self {
            Self::Absolute => "the hotspot's maximum temperature",
            Self::OverAmbient => "the temperature rise over ambient air",
            Self::OverSimilar => "the temperature rise over a similar component under similar load",
            Self::OverReference => "the temperature rise over a reference",
        }
    }

    /// The reference this basis needs, in words, for messages.
    fn wanted_reference(self) -> &'static str {
        match self {
            Self::Absolute | Self::OverReference => "a reference temperature",
            Self::OverAmbient => "an ambient reference",
            Self::OverSimilar => "a similar-component reference",
        }
    }
}

/// One row of a [`SeverityTable`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityLevel {
    /// 1 = least severe, rising by one per row.
    pub rank: u8,
    /// Short name, e.g. "probable deficiency".
    pub name: String,
    /// The level's lower bound, °C (absolute or ΔT, per the table's basis).
    pub from_c: f64,
    /// Whether a value exactly at `from_c` belongs to this level (≥) or to the one below (>).
    pub inclusive: bool,
    /// Recommended action, e.g. "repair as time permits".
    pub action: String,
}

impl SeverityLevel {
    /// Whether a compared value reaches this level.
    pub fn applies_to(&self, compared_c: f64) -> bool {
        if self.inclusive {
            compared_c >= self.from_c
        } else {
            compared_c > self.from_c
        }
    }
}

/// A severity classification: levels over one basis, with a citation.
///
/// Serde derives are for listing tables (API, `print-default-config`); deserializing one
/// does not validate it: user tables come in through [`parse_user_tables`] or
/// [`SeverityCatalog`], which do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityTable {
    /// Stable id (`[a-z0-9-]{1,64}`), recorded in every assessment.
    pub id: String,
    /// Version of this table's content, recorded in every assessment; bump it whenever a
    /// bound, name or action changes.
    pub version: u32,
    /// Human-readable title.
    pub title: String,
    /// Which value the levels are compared against.
    pub basis: SeverityBasis,
    /// Levels, strictly ascending by `from_c`, ranked 1, 2, ….
    pub levels: Vec<SeverityLevel>,
    /// When `Some(d)`: a reading with ΔT ≤ −d against an accepted reference is a cool
    /// exception (see the module documentation).
    pub cool_exception_delta_c: Option<f64>,
    /// Where the table comes from (a standard, a manual); empty when unknown.
    pub source: String,
}

/// What a table is asked to assess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityInputs {
    /// The hotspot's maximum temperature, °C.
    pub max_c: f64,
    /// The reference it is compared against, when one was measured or given.
    pub reference: Option<ReferenceTemperature>,
}

/// The numbers an assessment used (recorded on the wire for provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssessedInputs {
    /// The hotspot's maximum temperature, °C.
    pub max_c: f64,
    /// The reference temperature, °C, when one was given.
    pub reference_c: Option<f64>,
    /// What the reference is, when one was given.
    pub reference_kind: Option<ReferenceKind>,
    /// Where the reference came from, when one was given.
    pub reference_source: Option<String>,
    /// `max_c − reference_c` whenever a reference was given (also for `Absolute` tables and
    /// for references the table rejected), so a report can always show the ΔT.
    pub delta_c: Option<f64>,
    /// The value compared against the level bounds: `max_c` for `Absolute` tables, `delta_c`
    /// for ΔT tables. When the reading was not assessed nothing was compared and this is
    /// `max_c`.
    pub compared_c: f64,
}

/// The outcome of assessing one reading with one table (goes on the wire in a Finding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeverityAssessment {
    /// The table's id.
    pub table: String,
    /// The table's version.
    pub table_version: u32,
    /// The level's rank; 0 = below the first level, cool exception, or not assessed.
    pub level: u8,
    /// The level's name; [`NO_LEVEL_NAME`] at level 0.
    pub level_name: String,
    /// Recommended action: the level's, or [`NO_ACTION`], [`COOL_EXCEPTION_ACTION`],
    /// [`NOT_ASSESSED_ACTION`] at level 0.
    pub action: String,
    /// The numbers the assessment used.
    pub inputs: AssessedInputs,
    /// The component is far colder than its reference (see the module documentation).
    pub cool_exception: bool,
    /// Why the table could not assess the reading (missing or wrong-kind reference,
    /// non-finite input); level 0 then.
    pub not_assessed: Option<String>,
    /// True when the frame failed the image-quality gate ([`crate::quality`]): the level is
    /// what the temperatures as read give, *indicative* only — blur and saturation read
    /// peaks low, so the true level may be higher. Absent (false) on older payloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qualitative: bool,
}

impl SeverityAssessment {
    /// Whether the table could assess the reading (`not_assessed` is `None`).
    pub fn is_assessed(&self) -> bool {
        self.not_assessed.is_none()
    }

    /// Whether there is something to report: a level above 0 or a cool exception.
    pub fn is_reportable(&self) -> bool {
        self.level > 0 || self.cool_exception
    }
}

impl SeverityTable {
    /// Assesses one reading. See the module documentation for the rules.
    pub fn assess(&self, inputs: &SeverityInputs) -> SeverityAssessment {
        self.assess_held(inputs, None)
    }

    /// Assesses one reading of a hotspot whose previous assessment had level
    /// `previous_level`, with a hysteresis band of `hysteresis_c` (°C of the compared value).
    ///
    /// - Rising is immediate: the result is never below what [`Self::assess`] gives.
    /// - Falling is damped: a previous level `k` (or the highest level below it) is kept
    ///   while the compared value is still within `hysteresis_c` of that level's bound, i.e.
    ///   while the level would apply to `compared + hysteresis_c`. The band is
    ///   `[from_c − h, from_c)` for an inclusive bound and `(from_c − h, from_c]` for an
    ///   exclusive one, so a value must fall *below* `from_c − h` (inclusive bound) or to
    ///   `from_c − h` (exclusive bound) to drop.
    /// - `previous_level` above the table's highest rank is read as the highest rank (the
    ///   previous assessment may come from a longer table); a negative or NaN
    ///   `hysteresis_c` is read as 0, which gives exactly [`Self::assess`].
    /// - Cool exceptions and not-assessed readings are returned as they are: hysteresis
    ///   damps a level, it does not invent one.
    pub fn assess_with_hysteresis(
        &self,
        inputs: &SeverityInputs,
        previous_level: u8,
        hysteresis_c: f64,
    ) -> SeverityAssessment {
        self.assess_held(inputs, Some((previous_level, hysteresis_c.max(0.0))))
    }

    /// The level of a given rank, if the table has it.
    pub fn level(&self, rank: u8) -> Option<&SeverityLevel> {
        self.levels.iter().find(|level| level.rank == rank)
    }

    /// The highest rank of the table (0 for a table without levels).
    pub fn highest_rank(&self) -> u8 {
        self.levels
            .iter()
            .map(|level| level.rank)
            .max()
            .unwrap_or(0)
    }

    /// Checks the table's invariants (id, ranks, bounds, names, actions, cool exception),
    /// reporting every problem at once, with key paths starting at `table["<id>"]`.
    pub fn validate(&self) -> Result<(), SeverityConfigErrors> {
        let mut errors = Vec::new();
        user::check_table(self, &format!("table[{:?}]", self.id), &mut errors);
        SeverityConfigErrors::result(errors)
    }

    /// Index in `levels` of the highest level that applies to `compared_c`.
    fn level_index(&self, compared_c: f64) -> Option<usize> {
        self.levels
            .iter()
            .rposition(|level| level.applies_to(compared_c))
    }

    /// The compared value, or why there is none.
    fn compared_value(&self, inputs: &SeverityInputs) -> Result<f64, String> {
        if !inputs.max_c.is_finite() {
            return Err(format!(
                "the hotspot's maximum temperature ({}) is not a finite number",
                inputs.max_c
            ));
        }
        let reference = match &inputs.reference {
            Some(reference) if !reference.celsius.is_finite() => {
                return Err(format!(
                    "the reference temperature ({}, {}) is not a finite number",
                    reference.celsius, reference.source
                ));
            }
            Some(reference) => reference,
            None if self.basis.needs_reference() => {
                return Err(format!(
                    "table {} compares {} but no reference temperature was given",
                    self.id,
                    self.basis.describe()
                ));
            }
            None => return Ok(inputs.max_c),
        };
        if !self.basis.accepts(reference.kind) {
            return Err(format!(
                "table {} needs {} but the reference given is {} ({})",
                self.id,
                self.basis.wanted_reference(),
                match reference.kind {
                    ReferenceKind::Ambient => "ambient air",
                    ReferenceKind::SimilarComponent => "a similar component",
                },
                reference.source
            ));
        }
        Ok(match self.basis {
            SeverityBasis::Absolute => inputs.max_c,
            _ => inputs.max_c - reference.celsius,
        })
    }

    fn assess_held(
        &self,
        inputs: &SeverityInputs,
        hysteresis: Option<(u8, f64)>,
    ) -> SeverityAssessment {
        let reference = inputs.reference.as_ref();
        let delta_c = reference.map(|reference| inputs.max_c - reference.celsius);
        let mut assessment = SeverityAssessment {
            table: self.id.clone(),
            table_version: self.version,
            level: 0,
            level_name: NO_LEVEL_NAME.to_owned(),
            action: NO_ACTION.to_owned(),
            inputs: AssessedInputs {
                max_c: inputs.max_c,
                reference_c: reference.map(|reference| reference.celsius),
                reference_kind: reference.map(|reference| reference.kind),
                reference_source: reference.map(|reference| reference.source.clone()),
                delta_c,
                compared_c: inputs.max_c,
            },
            cool_exception: false,
            not_assessed: None,
            qualitative: false,
        };

        let compared_c = match self.compared_value(inputs) {
            Ok(compared_c) => compared_c,
            Err(reason) => {
                NOT_ASSESSED_ACTION.clone_into(&mut assessment.action);
                assessment.not_assessed = Some(reason);
                return assessment;
            }
        };
        assessment.inputs.compared_c = compared_c;

        // `compared_value` succeeded, so a reference here is finite and accepted.
        if let (Some(cool_delta_c), Some(delta_c)) = (self.cool_exception_delta_c, delta_c) {
            if delta_c <= -cool_delta_c {
                assessment.cool_exception = true;
                COOL_EXCEPTION_ACTION.clone_into(&mut assessment.action);
                return assessment;
            }
        }

        // Positions in `levels`, counted from 1 like ranks; 0 = below the first level.
        let position = |value: f64| self.level_index(value).map_or(0, |index| index + 1);
        let mut reached = position(compared_c);
        if let Some((previous_level, hysteresis_c)) = hysteresis {
            // The highest level, at most the previous one, still reached within the band.
            let held = position(compared_c + hysteresis_c).min(usize::from(previous_level));
            reached = reached.max(held);
        }
        let index = reached.checked_sub(1);
        if let Some(level) = index.and_then(|index| self.levels.get(index)) {
            assessment.level = level.rank;
            level.name.clone_into(&mut assessment.level_name);
            level.action.clone_into(&mut assessment.action);
        }
        assessment
    }
}

/// The severity tables available to an agent or a hub, by id: the built-ins plus any user
/// tables.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityCatalog {
    tables: BTreeMap<String, SeverityTable>,
}

impl SeverityCatalog {
    /// The built-in tables only (see [`builtin_tables`]).
    pub fn builtin() -> Self {
        let tables = builtin_tables()
            .into_iter()
            .map(|table| (table.id.clone(), table))
            .collect();
        Self { tables }
    }

    /// The built-in tables plus the user tables of a TOML file (format in
    /// [`parse_user_tables`]). Every problem in the file is reported at once.
    pub fn with_user_tables_toml(toml_text: &str) -> Result<Self, SeverityConfigErrors> {
        let mut catalog = Self::builtin();
        catalog.merge_user_tables_toml(toml_text)?;
        Ok(catalog)
    }

    /// Adds the user tables of a TOML file, all or none: on any error the catalog is left
    /// unchanged. A table whose id is already in the catalog is an error.
    pub fn merge_user_tables_toml(&mut self, toml_text: &str) -> Result<(), SeverityConfigErrors> {
        let tables = parse_user_tables(toml_text)?;
        let errors: Vec<SeverityConfigError> = tables
            .iter()
            .enumerate()
            .filter(|(_, table)| self.tables.contains_key(&table.id))
            .map(|(index, table)| {
                SeverityConfigError::invalid(
                    format!("table[{index}].id"),
                    ConfigProblem::AlreadyInCatalog {
                        id: table.id.clone(),
                    },
                )
            })
            .collect();
        SeverityConfigErrors::result(errors)?;
        for table in tables {
            self.tables.insert(table.id.clone(), table);
        }
        Ok(())
    }

    /// Adds one table after [validating](SeverityTable::validate) it. Built-in ids and ids
    /// already in the catalog are refused: tables are never silently replaced.
    pub fn insert(&mut self, table: SeverityTable) -> Result<(), SeverityConfigErrors> {
        let path = format!("table[{:?}]", table.id);
        let mut errors = Vec::new();
        user::check_table(&table, &path, &mut errors);
        if BUILTIN_TABLE_IDS.contains(&table.id.as_str()) {
            errors.push(SeverityConfigError::invalid(
                format!("{path}.id"),
                ConfigProblem::BuiltinId {
                    id: table.id.clone(),
                },
            ));
        } else if self.tables.contains_key(&table.id) {
            errors.push(SeverityConfigError::invalid(
                format!("{path}.id"),
                ConfigProblem::AlreadyInCatalog {
                    id: table.id.clone(),
                },
            ));
        }
        SeverityConfigErrors::result(errors)?;
        self.tables.insert(table.id.clone(), table);
        Ok(())
    }

    /// The table with this id.
    pub fn get(&self, id: &str) -> Option<&SeverityTable> {
        self.tables.get(id)
    }

    /// Every table id, in lexical order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.tables.keys().map(String::as_str)
    }

    /// Every table, in lexical order of id.
    pub fn tables(&self) -> impl Iterator<Item = &SeverityTable> + '_ {
        self.tables.values()
    }
}
