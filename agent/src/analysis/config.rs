//! Analysis configuration (`[analysis]`, a camera's `radiometry`): the schema is
//! `chitti_common::agent_config::analysis`.

pub use chitti_common::agent_config::analysis::*;
