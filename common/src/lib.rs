//! Chitti's shared core: FLIR radiometric file parsing, raw counts → °C, hotspot
//! segmentation, severity tables and palette rendering.
//!
//! This crate is deliberately pure: no async runtime, no network, no database and no
//! file-system access beyond what a caller hands in as bytes or a [`std::io::Read`].
//! The agent (cameras, drone drops) and the hub (hand uploads) both call it, so a
//! frame gives the same temperatures and the same findings wherever it is analysed.

pub mod agent_config;
pub mod analysis;
pub mod components;
pub mod config;
pub mod detector_input;
pub mod evidence;
pub mod finding;
pub mod flir;
pub mod geometry;
pub mod hotspot;
pub mod image;
pub mod inspection;
pub mod metrics_text;
pub mod model_manifest;
pub mod protocol;
pub mod quality;
pub mod radiometry;
pub mod render;
pub mod scene;
pub mod severity;
pub mod signing;
