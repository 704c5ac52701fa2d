//! The MQTT sink's configuration (`[mqtt]`, schema in `chitti_common::agent_config::mqtt`)
//! and the keys it names, read from the gateway's disk.

pub use chitti_common::agent_config::mqtt::*;
use std::path::Path;

/// Every hub key the agent trusts: `mqtt.hub_public_keys` and the lines of
/// `mqtt.hub_public_keys_file` (blank lines and `#` comments skipped).
pub fn hub_public_keys(mqtt: &MqttConfig) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
    let mut keys = Vec::new();
    for (i, key) in mqtt.hub_public_keys.iter().enumerate() {
        keys.push(
            chitti_common::signing::parse_public_key(key)
                .map_err(|e| format!("mqtt.hub_public_keys[{i}]: {e}"))?,
        );
    }
    if let Some(path) = &mqtt.hub_public_keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "mqtt.hub_public_keys_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(chitti_common::signing::parse_public_key(line).map_err(|e| {
                format!(
                    "mqtt.hub_public_keys_file: {} line {}: {e}",
                    path.display(),
                    n + 1
                )
            })?);
        }
    }
    Ok(keys)
}

/// Reads a signing key file (64 hex characters).
pub fn read_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| format!("{}: a signing key is 64 hex characters", path.display()))?;
    Ok(chitti_common::signing::signing_key_from_seed(&seed))
}
