//! Strict, versioned TOML configuration helpers shared by the agent and the hub: every
//! problem of a file is collected with its key path and reported at once.
//!
//! The pattern: parse the text as a TOML table once (a syntax error is the one problem
//! that ends the load early), then decode each section on its own with
//! [`Problems::decode`] (structs use `deny_unknown_fields`), then validate the decoded
//! values, pushing every problem with [`Problems::push`].

use serde::de::DeserializeOwned;
use std::fmt;

/// What a secret reads as when a configuration is shown (the hub's notification
/// settings, a gateway's reported configuration), and means "keep the stored one" when
/// a document carrying it is written back.
pub const KEPT_SECRET: &str = "(kept)";

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path (`camera[0].source.fps`), or empty for the file as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of a configuration file, in file order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} configuration error(s) in {}:\n{}", .errors.len(), .origin, .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors {
    /// Where the configuration came from (file name).
    pub origin: String,
    /// The problems.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The key paths, in order.
    pub fn paths(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.path.as_str()).collect()
    }
}

/// Collects problems while a configuration is loaded.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Decodes one section on its own, so that a problem in it does not hide problems
    /// elsewhere; the error names the key path inside the section.
    pub fn decode<T: DeserializeOwned>(&mut self, path: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(err) => {
                let inner = err.path().to_string();
                let full = match (path.is_empty(), inner.as_str()) {
                    (true, _) => inner.clone(),
                    (false, ".") => path.to_string(),
                    (false, p) if p.starts_with('[') => format!("{path}{p}"),
                    (false, p) => format!("{path}.{p}"),
                };
                let message = err.into_inner().message().trim().replace('\n', " ");
                self.push(full, message);
                None
            }
        }
    }
}

impl Problems {
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found.
    pub fn into_inner(self) -> Vec<ConfigError> {
        self.0
    }

    /// `Ok` when nothing is wrong, otherwise every problem, attributed to `origin`.
    pub fn into_result(self, origin: &str) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors {
                origin: origin.to_string(),
                errors: self.0,
            })
        }
    }
}

impl ConfigErrors {
    /// One problem with the file as a whole (unreadable, undecodable).
    pub fn whole_file(origin: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_string(),
            errors: vec![ConfigError {
                path: String::new(),
                message: message.into(),
            }],
        }
    }
}

/// The value of a section whose every field has a serde default: what an empty table
/// decodes to. The serde attributes stay the one source of truth for defaults.
pub fn serde_defaults<T: DeserializeOwned>() -> T {
    toml::from_str("").expect("every field of this section has a default")
}

/// Implements `Default` for configuration sections through [`serde_defaults`].
#[macro_export]
macro_rules! defaults_from_serde {
    ($($ty:ty),* $(,)?) => {$(
        impl Default for $ty {
            fn default() -> Self {
                $crate::config::serde_defaults()
            }
        }
    )*};
}

/// A TOML syntax error as one line, with its line and column.
pub fn toml_syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span().and_then(|s| text.get(..s.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Parses configuration text into a table; a syntax error is the only problem.
pub fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigErrors> {
    toml::from_str(text).map_err(|e: toml::de::Error| ConfigErrors {
        origin: origin.to_string(),
        errors: vec![ConfigError {
            path: String::new(),
            message: toml_syntax_message(text, &e),
        }],
    })
}

// Byte sizes written as people write them: `"512 MiB"`, `"64KiB"`, `"2 GB"` or a
// plain number of bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"512 MiB"`, `"1.5GiB"`, `"64 kB"`, `"4096"` (bytes).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. \"512 MiB\")"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1 << 10,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1 << 20,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, kB, MB, GB)"
                ))
            }
        };
        let bytes = number * factor as f64;
        if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(Self(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= size && b % size == 0 {
                return write!(f, "{} {unit}", b / size);
            }
        }
        write!(f, "{b} B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size such as \"512 MiB\" or a number of bytes")
        })? {
            Written::Bytes(b) => Ok(Self(b)),
            Written::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_written() {
        assert_eq!(ByteSize::parse("512 MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("2 GB"), Ok(ByteSize(2_000_000_000)));
        assert_eq!(ByteSize::parse("1.5 GiB"), Ok(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(ByteSize::parse("lots").is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 B");
    }
}
