//! Hotspots (being written).
