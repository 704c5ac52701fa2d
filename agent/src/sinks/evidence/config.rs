//! The evidence uploader's configuration (`[evidence]`): the schema is
//! `chitti_common::agent_config::evidence`.

pub use chitti_common::agent_config::evidence::*;
