//! Severity tables (being written).
