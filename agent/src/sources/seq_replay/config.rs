//! The `seq_replay` source's configuration: the schema is
//! `chitti_common::agent_config::sources::seq_replay`.

pub use chitti_common::agent_config::sources::seq_replay::*;
