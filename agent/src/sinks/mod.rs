//! Where findings go: the MQTT link to the hub (findings, status, telemetry, acks) and
//! the evidence uploader.

pub mod evidence;
pub mod mqtt;
