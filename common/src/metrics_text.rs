//! The Prometheus text exposition format (0.0.4), written by hand: the agent's and
//! the hub's `/metrics` both build their answer with [`MetricsWriter`].

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

use std::collections::HashMap;
use std::fmt::Write as _;

/// Builds one exposition. Samples of a metric are kept together and its `# HELP` and
/// `# TYPE` lines written once, in the order metrics were first seen, whatever order
/// the samples come in. Invalid names and a metric used with two types are dropped
/// (see [`MetricsWriter::dropped`]) rather than producing an exposition Prometheus would reject whole.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    families: Vec<Family>,
    index: HashMap<String, usize>,
    dropped: Vec<String>,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

impl MetricsWriter {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sample of a counter (a value that only goes up; by convention named `*_total`).
    /// `help` is taken from the first sample of `name`.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(Kind::Counter, name, help, labels, value);
    }

    /// A sample of a gauge (a value that goes up and down).
    /// `help` is taken from the first sample of `name`.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(Kind::Gauge, name, help, labels, value);
    }

    /// Samples dropped as invalid, with the reason (the caller logs them).
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

    /// Whether no sample was written.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for family in &self.families {
            out.push_str("# HELP ");
            out.push_str(&family.name);
            out.push(' ');
            escape_help(&family.help, &mut out);
            out.push('\n');
            out.push_str("# TYPE ");
            out.push_str(&family.name);
            out.push(' ');
            out.push_str(family.kind.word());
            out.push('\n');
            out.push_str(&family.samples);
        }
        out
    }

    fn sample(&mut self, kind: Kind, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if !is_metric_name(name) {
            self.dropped.push(format!("invalid metric name {:?}", name));
            return;
        }
        for (i, (label, _)) in labels.iter().enumerate() {
            if !is_label_name(label) || labels[..i].iter().any(|(seen, _)| seen == label) {
                self.dropped
                    .push(format!("{name}: invalid or repeated label name {label:?}"));
                return;
            }
        }
        let at = match self.index.get(name) {
            Some(&at) => {
                if self.families[at].kind != kind {
                    self.dropped.push(format!(
                        "{name} written as {} and as {}",
                        self.families[at].kind.word(),
                        kind.word()
                    ));
                    return;
                }
                at
            }
            None => {
                self.families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    samples: String::new(),
                });
                self.index.insert(name.to_owned(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let out = &mut self.families[at].samples;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                escape_label_value(value, out);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        write_value(value, out);
        out.push('\n');
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    // Names starting with `__` are reserved for Prometheus itself.
    !name.starts_with("__")
        && matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // Counts read best as integers ("3", not "3.0").
        let _ = write!(out, "{}", value as i64);
    } else {
        // Shortest round-trip form, with an exponent for very large or small values.
        let _ = write!(out, "{value:?}");
    }
}
