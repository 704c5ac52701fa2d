//! The Chitti edge agent: camera sources → analysis → durable outbox → MQTT, with
//! end-to-end acknowledgement from the hub. `inspect` is the thermographer's view of
//! one FLIR file. See ARCHITECTURE.md for the map.

pub mod analysis;
pub mod backoff;
pub mod cli;
pub mod config;
/// The component detector (its own crate, `agent/detector/`, so the hub's model registry
/// runs the same code without the rest of the agent).
pub use chitti_detector as detector;
pub mod features;
pub mod health;
pub mod inspect;
pub mod outbox;
pub mod patrol;
pub mod remote;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod synth;
pub mod topology;
