//! The `simulated` source's configuration: the schema is
//! `chitti_common::agent_config::sources::simulated`.

pub use chitti_common::agent_config::sources::simulated::*;
