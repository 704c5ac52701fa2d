//! Agent library (being written).
