//! The Chitti hub: MQTT ingest (embedded rumqttd or an external broker), the store
//! (SQLite or Postgres), evidence, health and metrics, the API and the dashboard. See
//! ARCHITECTURE.md.

pub mod alarms;
pub mod api;
pub mod backup;
pub mod broker;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod evidence;
pub mod guard;
pub mod http;
pub mod hub_key;
pub mod ingest;
pub mod listener;
pub mod live;
pub mod live_relay;
pub mod notify;
pub mod remote_config;
pub mod retention;
pub mod rollouts;
pub mod serve;
pub mod store;
