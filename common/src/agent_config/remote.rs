//! `[remote]`: whether and how the gateway takes its configuration from the hub, and the
//! rules a document from the hub must keep (DESIGN.md §9).
//!
//! A desired configuration is a whole agent file, validated on the hub with this
//! crate's code and again on the gateway. Some keys say who the gateway is, how it
//! reaches and trusts the hub, and where its outbox lives: they stay the gateway's own
//! ([`LOCAL_KEYS`]). A document that sets one of them to anything but the gateway's own
//! value is rejected, naming the key, unless the gateway's file lists it in
//! `remote.allow_keys`; the `[remote]` section itself is never taken from a document.

use super::AgentConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::config::KEPT_SECRET;

/// Keys a document from the hub cannot change unless `remote.allow_keys` names them.
pub const LOCAL_KEYS: &[&str] = &[
    "identity.site",
    "identity.gateway",
    "mqtt.url",
    "mqtt.failover_urls",
    "mqtt.client_id",
    "mqtt.username",
    "mqtt.password",
    "mqtt.password_file",
    "mqtt.ca_file",
    "mqtt.client_cert_file",
    "mqtt.client_key_file",
    "mqtt.signing_key_file",
    "mqtt.hub_public_keys",
    "mqtt.hub_public_keys_file",
    "evidence.hub_url",
    "evidence.ca_file",
    "outbox.path",
];

/// `[remote]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Take desired configurations from the hub (`/config/set`, signed by a key in
    /// `mqtt.hub_public_keys`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// After applying a document, how long the agent waits to reach the broker before
    /// it restores the configuration it ran before, seconds.
    #[serde(default = "default_probation_s")]
    pub probation_s: u64,
    /// [`LOCAL_KEYS`] a document may change (`["mqtt.url"]` to move a fleet to another
    /// broker: the probation brings a gateway back if the new one cannot be reached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_keys: Vec<String>,
    /// Where the applied documents are kept (the current one and the one before).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

crate::defaults_from_serde!(RemoteConfig);

fn yes() -> bool {
    true
}

fn default_probation_s() -> u64 {
    120
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("remote-config")
}

impl RemoteConfig {
    pub(super) fn validate_into(&self, p: &mut crate::config::Problems) {
        if !(5..=86_400).contains(&self.probation_s) {
            p.push("remote.probation_s", "must be 5 to 86400 seconds");
        }
        for (i, key) in self.allow_keys.iter().enumerate() {
            if !LOCAL_KEYS.contains(&key.as_str()) {
                p.push(
                    format!("remote.allow_keys[{i}]"),
                    format!(
                        "{key:?} is not a gateway-local key (one of: {})",
                        LOCAL_KEYS.join(", ")
                    ),
                );
            }
        }
    }
}

/// `document` (a desired configuration, already validated) made to keep the gateway's
/// own [`LOCAL_KEYS`] and `[remote]` from `local`; every local key the document would
/// change without `remote.allow_keys` allowing it is an error naming it.
pub fn keep_local(local: &AgentConfig, document: AgentConfig) -> Result<AgentConfig, Vec<String>> {
    let (Ok(mine), Ok(mut theirs)) = (serde_json::to_value(local), serde_json::to_value(&document))
    else {
        return Err(vec!["the configuration cannot be compared".into()]);
    };
    let mut errors = Vec::new();
    for key in LOCAL_KEYS {
        let allowed = local.remote.allow_keys.iter().any(|k| k == key);
        let own = lookup(&mine, key).cloned();
        let asked = lookup(&theirs, key).cloned();
        let kept = asked.as_ref().and_then(|v| v.as_str()) == Some(KEPT_SECRET);
        if own == asked || kept || allowed {
            if !allowed || kept {
                set(&mut theirs, key, own);
            }
            continue;
        }
        errors.push(format!(
            "{key}: the gateway keeps its own value (list it in remote.allow_keys to let a document change it)"
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut merged: AgentConfig = serde_json::from_value(theirs)
        .map_err(|e| vec![format!("the configuration cannot be merged: {e}")])?;
    merged.remote = local.remote.clone();
    Ok(merged)
}

/// `config` as TOML for people and the hub, secrets replaced by [`KEPT_SECRET`].
pub fn redacted_toml(config: &AgentConfig) -> String {
    let mut shown = config.clone();
    if shown.mqtt.password.is_some() {
        shown.mqtt.password = Some(KEPT_SECRET.into());
    }
    toml::to_string(&shown).unwrap_or_else(|e| format!("# not shown: {e}\n"))
}

fn lookup<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.')
        .try_fold(value, |v, part| v.get(part))
        .filter(|v| !v.is_null())
}

fn set(value: &mut serde_json::Value, key: &str, new: Option<serde_json::Value>) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut at = value;
    for part in parts {
        let Some(next) = at.get_mut(part) else { return };
        at = next;
    }
    if let Some(map) = at.as_object_mut() {
        match new {
            Some(v) => {
                map.insert(last.to_string(), v);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_config::TablesOnGateway;
    use std::path::Path;

    fn parse(text: &str) -> AgentConfig {
        AgentConfig::parse(text, "test", Path::new("/etc/chitti"), &TablesOnGateway)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const LOCAL: &str = "version = 1\n[identity]\nsite = \"north\"\ngateway = \"gw-a\"\n\
        [[camera]]\nid = \"c\"\n[camera.source]\nkind = \"simulated\"\n\
        [mqtt]\nurl = \"mqtt://hub:1883\"\nusername = \"gw\"\npassword = \"s3cret\"\n\
        [remote]\nprobation_s = 30\n";

    #[test]
    fn a_document_keeps_the_gateways_own_keys_and_changes_the_rest() {
        let local = parse(LOCAL);
        // What the gateway reports (secret hidden), edited on the hub.
        let shown = redacted_toml(&local);
        assert!(
            shown.contains("password = \"(kept)\"") && !shown.contains("s3cret"),
            "{shown}"
        );
        let edited = shown
            .replace(
                "[remote]\nenabled = true\nprobation_s = 30",
                "[remote]\nprobation_s = 999",
            )
            .replace("max_hotspots = 32", "max_hotspots = 3");
        assert!(
            edited.contains("probation_s = 999") && edited.contains("max_hotspots = 3"),
            "{edited}"
        );
        let merged = keep_local(&local, parse(&edited)).unwrap();
        assert_eq!(merged.analysis.max_hotspots, 3);
        assert_eq!(merged.mqtt.password.as_deref(), Some("s3cret"));
        assert_eq!(
            merged.remote.probation_s, 30,
            "[remote] is never taken from a document"
        );
    }

    #[test]
    fn a_document_that_moves_a_local_key_is_refused_naming_it_unless_allowed() {
        let local = parse(LOCAL);
        let moved = LOCAL
            .replace("mqtt://hub:1883", "mqtt://elsewhere:1883")
            .replace("gateway = \"gw-a\"", "gateway = \"gw-b\"");
        let errors = keep_local(&local, parse(&moved)).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("identity.gateway: the gateway keeps its own value"));
        assert!(errors[1].starts_with("mqtt.url:"));
        let allowing = parse(&LOCAL.replace("probation_s = 30", "allow_keys = [\"mqtt.url\"]"));
        let only_url = LOCAL.replace("mqtt://hub:1883", "mqtt://elsewhere:1883");
        let merged = keep_local(&allowing, parse(&only_url)).unwrap();
        assert_eq!(merged.mqtt.url, "mqtt://elsewhere:1883");
    }

    #[test]
    fn allow_keys_names_only_local_keys() {
        let err = AgentConfig::parse(
            &LOCAL.replace(
                "probation_s = 30",
                "probation_s = 1\nallow_keys = [\"analysis.table\"]",
            ),
            "test",
            Path::new("/"),
            &TablesOnGateway,
        )
        .unwrap_err();
        let paths = err.paths();
        assert!(
            paths.contains(&"remote.probation_s") && paths.contains(&"remote.allow_keys[0]"),
            "{err}"
        );
    }
}
