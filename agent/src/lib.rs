//! The Chitti edge agent.
//!
//! Today the agent offers `inspect`, the thermographer's view of one FLIR file; the
//! camera pipeline (sources → analysis → outbox → MQTT) builds on the same `common`
//! analysis (see ARCHITECTURE.md).

pub mod cli;
pub mod inspect;
