//! The MQTT sink's configuration (`[mqtt]`) and the keys it names.

use super::health::HealthConfig;
use super::outbox::OutboxConfig;
use crate::config::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The MQTT connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    #[serde(default = "default_mqtt_url")]
    pub url: String,
    /// More addresses of the same (clustered) broker, same scheme as `url`. After a
    /// connection fails the sink tries the next address in turn (`url` first, then
    /// these, round and round), waiting the jittered reconnect delay between tries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_urls: Vec<String>,
    /// Client id; default `chitti-{site}-{gateway}`. The hub's embedded broker binds a
    /// gateway's session to `{site}.{gateway}` whatever is asked (and Mosquitto with
    /// `use_username_as_clientid` to the user name), so no gateway can take over
    /// another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// User name for password authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate (`mqtts://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This gateway's client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// This gateway's private key (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// This gateway's Ed25519 signing key (64 hex characters; `chitti-agent keygen`,
    /// or the file `chitti-hub gateway add` writes). Every finding batch is signed
    /// with it so the hub can prove where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The hub's public keys (64 hex characters each; `chitti-hub hub-key`, or
    /// `agent-credentials.toml` from `gateway add`). A finding leaves the outbox only on
    /// an `/ack` signed by one of them; list two while the hub's key is rotated. Empty:
    /// no ack can be believed and the outbox keeps everything (said at start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hub_public_keys: Vec<String>,
    /// A file of the hub's public keys, one per line (`hub-public-key`, written by
    /// `chitti-hub gateway add`); trusted together with `hub_public_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_public_keys_file: Option<PathBuf>,
    /// Keep-alive, seconds (rumqttd rejects 0).
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// First reconnect delay, ms (doubles, with jitter).
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, ms.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Largest MQTT packet sent or received.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: ByteSize,
}

crate::defaults_from_serde!(MqttConfig);

/// What the MQTT sink needs besides `[mqtt]`: the build context of the agent's
/// `MqttSink::new`.
#[derive(Debug, Clone)]
pub struct MqttContext<'a> {
    /// `[mqtt]`.
    pub mqtt: &'a MqttConfig,
    /// Site id (topic prefix).
    pub site: &'a str,
    /// Gateway id (topic prefix).
    pub gateway: &'a str,
    /// The MQTT client id.
    pub client_id: String,
    /// `[outbox]`: batch sizes, in-flight limit and resend time.
    pub outbox: &'a OutboxConfig,
    /// `[health]`: status and telemetry intervals.
    pub health: &'a HealthConfig,
}

impl MqttConfig {
    /// Host, port and whether TLS is used, from `url`.
    pub fn endpoint(&self) -> Result<(String, u16, bool), String> {
        parse_endpoint(&self.url)
    }

    /// Every broker address, `url` first then `failover_urls`, and whether TLS is used
    /// (all must agree).
    pub fn endpoints(&self) -> Result<(Vec<(String, u16)>, bool), String> {
        let (host, port, tls) = self.endpoint()?;
        let mut all = vec![(host, port)];
        for url in &self.failover_urls {
            let (host, port, other) = parse_endpoint(url)?;
            if other != tls {
                return Err(format!(
                    "{url:?}: every broker address uses the scheme of url ({})",
                    if tls { "mqtts://" } else { "mqtt://" }
                ));
            }
            all.push((host, port));
        }
        Ok((all, tls))
    }
}

/// Host, port and whether TLS is used, from an `mqtt://` or `mqtts://` URL.
pub(crate) fn parse_endpoint(url: &str) -> Result<(String, u16, bool), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{url:?}: no host name"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port, tls))
}

fn default_mqtt_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}

fn default_keep_alive() -> u64 {
    30
}

fn default_reconnect_min() -> u64 {
    500
}

fn default_reconnect_max() -> u64 {
    60_000
}

fn default_max_packet() -> ByteSize {
    ByteSize(1 << 20)
}
