//! The outbox's configuration (`[outbox]`): the schema is
//! `chitti_common::agent_config::outbox`.

pub use chitti_common::agent_config::outbox::*;
