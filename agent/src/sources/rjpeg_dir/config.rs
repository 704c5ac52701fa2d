//! The `rjpeg_dir` source's configuration: the schema is
//! `chitti_common::agent_config::sources::rjpeg_dir`.

pub use chitti_common::agent_config::sources::rjpeg_dir::*;
