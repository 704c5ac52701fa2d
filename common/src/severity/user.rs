//! User severity tables: a thermographer's or a utility's own table, from TOML.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::builtin::BUILTIN_TABLE_IDS;
use super::{SeverityBasis, SeverityLevel, SeverityTable};

/// The only user-tables file format version accepted (`version = 1` at the top of the file).
pub const USER_TABLES_FILE_VERSION: u32 = 1;

/// Longest table id accepted.
const MAX_ID_LEN: usize = 64;

/// What is wrong at one key path of a severity table or user-tables file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    /// The file's `version` is not [`USER_TABLES_FILE_VERSION`].
    #[error("unsupported file version {found} (only {USER_TABLES_FILE_VERSION} is accepted)")]
    UnsupportedFileVersion {
        /// The version the file declares.
        found: u32,
    },
    /// A table version of 0.
    #[error("must be at least 1")]
    ZeroVersion,
    /// The id is not `[a-z0-9-]{1,64}`.
    #[error("invalid id {id:?}: use 1 to 64 characters from a-z, 0-9 and -")]
    BadId {
        /// The id as written.
        id: String,
    },
    /// Two tables of the file share an id.
    #[error("duplicate id {id:?} (already used by {first})")]
    DuplicateId {
        /// The id.
        id: String,
        /// Key path of the table that used it first.
        first: String,
    },
    /// The id is a built-in table's.
    #[error("{id:?} is the id of a built-in table; choose another id")]
    BuiltinId {
        /// The id.
        id: String,
    },
    /// The catalog already holds a table with this id.
    #[error("a table with id {id:?} is already in the catalog")]
    AlreadyInCatalog {
        /// The id.
        id: String,
    },
    /// A table without levels.
    #[error("at least one level is required")]
    NoLevels,
    /// More levels than a `u8` rank can number.
    #[error("{count} levels, at most 255 are supported")]
    TooManyLevels {
        /// How many levels the table has.
        count: usize,
    },
    /// A level bound not strictly above the previous level's.
    #[error("must be greater than the previous level's from_c ({previous_c}): bounds must strictly ascend")]
    NotAscending {
        /// The previous level's bound.
        previous_c: f64,
    },
    /// A rank out of sequence (only in tables built in code: file ranks come from the order).
    #[error("must be {expected}: levels are ranked 1, 2, … in order (found {found})")]
    BadRank {
        /// The rank the position calls for.
        expected: usize,
        /// The rank the level has.
        found: u8,
    },
    /// NaN or infinite.
    #[error("must be finite")]
    NotFinite,
    /// A cool-exception threshold of 0 or below.
    #[error("must be greater than 0 (the exception fires at ΔT ≤ -cool_exception_delta_c)")]
    NotPositive,
    /// An empty or blank text.
    #[error("must not be empty")]
    Empty,
}

/// One problem found while loading or validating severity tables.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeverityConfigError {
    /// The TOML could not be read into the file schema: syntax, unknown key, wrong type,
    /// missing required key (the position and toml's own message).
    #[error("{0}")]
    Toml(String),
    /// A value that is well-formed but invalid.
    #[error("{path}: {problem}")]
    Invalid {
        /// Key path, e.g. `table[1].level[0].from_c`.
        path: String,
        /// What is wrong there.
        problem: ConfigProblem,
    },
}

impl SeverityConfigError {
    /// A problem at a key path.
    pub fn invalid(path: impl Into<String>, problem: ConfigProblem) -> Self {
        Self::Invalid {
            path: path.into(),
            problem,
        }
    }

    /// The key path, for an [`SeverityConfigError::Invalid`].
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Toml(_) => None,
            Self::Invalid { path, .. } => Some(path),
        }
    }

    fn toml(text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim();
        let position = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rsplit('\n')
                    .next()
                    .map_or(0, |line| line.chars().count())
                    + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        // toml's message may span lines; keep one error per line.
        Self::Toml(format!("{position}{}", message.replace('\n', " ")))
    }
}

/// Every problem found in one severity configuration, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityConfigErrors(
    /// The problems; never empty.
    pub Vec<SeverityConfigError>,
);

impl SeverityConfigErrors {
    /// `Ok(())` when `errors` is empty.
    pub(super) fn result(errors: Vec<SeverityConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }

    /// The key paths of the `Invalid` problems, in order.
    pub fn paths(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(SeverityConfigError::path)
            .collect()
    }
}

/// One problem per line.
impl fmt::Display for SeverityConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SeverityConfigErrors {}

/// The user-tables file, as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserTablesFile {
    version: u32,
    #[serde(default, rename = "table")]
    tables: Vec<UserTable>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserTable {
    id: String,
    version: u32,
    title: String,
    basis: SeverityBasis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cool_exception_delta_c: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    source: String,
    // Optional in serde so that a table without levels is reported with its key path.
    #[serde(default, rename = "level")]
    levels: Vec<UserLevel>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLevel {
    name: String,
    from_c: f64,
    #[serde(default = "inclusive_default")]
    inclusive: bool,
    action: String,
}

fn inclusive_default() -> bool {
    true
}

impl From<UserTable> for SeverityTable {
    fn from(table: UserTable) -> Self {
        let levels = table
            .levels
            .into_iter()
            .enumerate()
            .map(|(index, level)| SeverityLevel {
                // Beyond 255 levels the table is rejected (TooManyLevels) anyway.
                rank: u8::try_from(index + 1).unwrap_or(u8::MAX),
                name: level.name,
                from_c: level.from_c,
                inclusive: level.inclusive,
                action: level.action,
            })
            .collect();
        Self {
            id: table.id,
            version: table.version,
            title: table.title,
            basis: table.basis,
            levels,
            cool_exception_delta_c: table.cool_exception_delta_c,
            source: table.source,
        }
    }
}

impl From<&SeverityTable> for UserTable {
    fn from(table: &SeverityTable) -> Self {
        Self {
            id: table.id.clone(),
            version: table.version,
            title: table.title.clone(),
            basis: table.basis,
            cool_exception_delta_c: table.cool_exception_delta_c,
            source: table.source.clone(),
            levels: table
                .levels
                .iter()
                .map(|level| UserLevel {
                    name: level.name.clone(),
                    from_c: level.from_c,
                    inclusive: level.inclusive,
                    action: level.action.clone(),
                })
                .collect(),
        }
    }
}

/// Parses and validates a user-tables TOML file, reporting every problem at once.
///
/// ```toml
/// version = 1                      # file format version; only 1 is accepted
/// [[table]]
/// id = "acme-substation"           # [a-z0-9-]{1,64}, not a built-in id, unique in the file
/// version = 3                      # the table's own version, ≥ 1
/// title = "ACME substation practice"
/// basis = "over_ambient"           # absolute | over_ambient | over_similar | over_reference
/// cool_exception_delta_c = 8       # optional, > 0
/// source = "ACME maintenance manual rev 4"   # optional
/// [[table.level]]                  # at least one; ranked 1, 2, … in file order
/// name = "minor"
/// from_c = 5                       # finite, strictly ascending
/// inclusive = true                 # optional, default true (≥); false means >
/// action = "note for next outage"
/// ```
///
/// Unknown keys, wrong types and TOML syntax errors stop the parse and are reported as one
/// [`SeverityConfigError::Toml`] (with line and column); everything else is collected as
/// [`SeverityConfigError::Invalid`] with key paths such as `table[1].level[0].from_c`.
/// Ids of other user tables already in a catalog are checked by
/// [`super::SeverityCatalog::merge_user_tables_toml`].
pub fn parse_user_tables(toml_text: &str) -> Result<Vec<SeverityTable>, SeverityConfigErrors> {
    let file: UserTablesFile = toml::from_str(toml_text).map_err(|error| {
        SeverityConfigErrors(vec![SeverityConfigError::toml(toml_text, &error)])
    })?;

    let mut errors = Vec::new();
    if file.version != USER_TABLES_FILE_VERSION {
        errors.push(SeverityConfigError::invalid(
            "version",
            ConfigProblem::UnsupportedFileVersion {
                found: file.version,
            },
        ));
    }
    let tables: Vec<SeverityTable> = file.tables.into_iter().map(SeverityTable::from).collect();
    let mut first_use: HashMap<&str, String> = HashMap::new();
    for (index, table) in tables.iter().enumerate() {
        let path = format!("table[{index}]");
        check_table(table, &path, &mut errors);
        let id_path = format!("{path}.id");
        if BUILTIN_TABLE_IDS.contains(&table.id.as_str()) {
            errors.push(SeverityConfigError::invalid(
                id_path,
                ConfigProblem::BuiltinId {
                    id: table.id.clone(),
                },
            ));
        } else if let Some(first) = first_use.get(table.id.as_str()) {
            errors.push(SeverityConfigError::invalid(
                id_path,
                ConfigProblem::DuplicateId {
                    id: table.id.clone(),
                    first: first.clone(),
                },
            ));
        } else {
            first_use.insert(&table.id, path);
        }
    }
    SeverityConfigErrors::result(errors)?;
    Ok(tables)
}

/// Writes tables in the user-tables file format (the inverse of [`parse_user_tables`]),
/// e.g. to start a user table from a built-in one (change its id first).
pub fn user_tables_to_toml<'a>(
    tables: impl IntoIterator<Item = &'a SeverityTable>,
) -> Result<String, toml::ser::Error> {
    let file = UserTablesFile {
        version: USER_TABLES_FILE_VERSION,
        tables: tables.into_iter().map(UserTable::from).collect(),
    };
    toml::to_string(&file)
}

fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// Checks one table's own invariants (everything but how its id relates to other tables),
/// pushing problems with key paths under `path`.
pub(super) fn check_table(
    table: &SeverityTable,
    path: &str,
    errors: &mut Vec<SeverityConfigError>,
) {
    let mut problem = |key: String, problem: ConfigProblem| {
        errors.push(SeverityConfigError::invalid(key, problem));
    };
    if !is_valid_id(&table.id) {
        problem(
            format!("{path}.id"),
            ConfigProblem::BadId {
                id: table.id.clone(),
            },
        );
    }
    if table.version == 0 {
        problem(format!("{path}.version"), ConfigProblem::ZeroVersion);
    }
    if table.title.trim().is_empty() {
        problem(format!("{path}.title"), ConfigProblem::Empty);
    }
    if let Some(delta_c) = table.cool_exception_delta_c {
        let key = format!("{path}.cool_exception_delta_c");
        if !delta_c.is_finite() {
            problem(key, ConfigProblem::NotFinite);
        } else if delta_c <= 0.0 {
            problem(key, ConfigProblem::NotPositive);
        }
    }
    if table.levels.is_empty() {
        problem(format!("{path}.level"), ConfigProblem::NoLevels);
    } else if table.levels.len() > usize::from(u8::MAX) {
        problem(
            format!("{path}.level"),
            ConfigProblem::TooManyLevels {
                count: table.levels.len(),
            },
        );
    }
    // The last finite bound seen, so that one NaN does not hide or cause an order error.
    let mut previous_c: Option<f64> = None;
    for (index, level) in table.levels.iter().enumerate() {
        let level_path = format!("{path}.level[{index}]");
        // Past 255 levels the table is already rejected; do not add a rank error per level.
        if table.levels.len() <= usize::from(u8::MAX) && usize::from(level.rank) != index + 1 {
            problem(
                format!("{level_path}.rank"),
                ConfigProblem::BadRank {
                    expected: index + 1,
                    found: level.rank,
                },
            );
        }
        if level.name.trim().is_empty() {
            problem(format!("{level_path}.name"), ConfigProblem::Empty);
        }
        if !level.from_c.is_finite() {
            problem(format!("{level_path}.from_c"), ConfigProblem::NotFinite);
        } else {
            if let Some(previous_c) = previous_c {
                if level.from_c <= previous_c {
                    problem(
                        format!("{level_path}.from_c"),
                        ConfigProblem::NotAscending { previous_c },
                    );
                }
            }
            previous_c = Some(level.from_c);
        }
        if level.action.trim().is_empty() {
            problem(format!("{level_path}.action"), ConfigProblem::Empty);
        }
    }
}
