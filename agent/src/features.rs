//! What this build of the agent can do, by cargo feature. A leaf module: configuration
//! checks and components read it without importing each other.

/// Whether this build can capture from V4L2 devices (the `v4l2` cargo feature, off by
/// default: its `v4l` crate runs bindgen, which needs libclang when building).
pub const V4L2_BUILT_IN: bool = cfg!(feature = "v4l2");

/// Why a build without the `v4l2` feature cannot open a device.
pub const V4L2_MISSING: &str = "this chitti-agent was built without V4L2 capture; \
     rebuild it with `--features v4l2` (needs libclang at build time, see cross/README.md)";
