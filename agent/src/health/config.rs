//! Status, telemetry and metrics configuration (`[health]`): the schema is
//! `chitti_common::agent_config::health`.

pub use chitti_common::agent_config::health::*;
