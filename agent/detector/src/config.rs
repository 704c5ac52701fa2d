//! The component detector's configuration (`[detector]`): the schema is
//! `chitti_common::agent_config::detector`.

pub use chitti_common::agent_config::detector::*;
