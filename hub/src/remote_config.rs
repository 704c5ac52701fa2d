//! Remote configuration on the hub (issue #19; DESIGN.md §9): a gateway's desired
//! document is validated with the agent's own code (`chitti_common::agent_config`),
//! saved with a new version ([`GatewayConfigStore`](crate::store::GatewayConfigStore)), and published by the
//! [`ConfigPublisher`]: retained on the gateway's `/config/set`, signed with the hub's
//! key, so an agent that was away gets the newest version (and only it) when it
//! connects again.
//!
//! The publisher works from the store alone: on start, on a save (its signal) and every
//! [`REPUBLISH_EVERY`], it publishes each gateway's newest version that this process has
//! not yet handed to the broker. A hub restart (the embedded broker keeps retained
//! messages in memory) or a broker that was down therefore costs nothing but a delay;
//! several replicas publishing the same signed document is harmless (the agent ignores
//! what is not newer than what it runs).

use crate::broker::HubBus;
use crate::store::Store;
use chitti_common::agent_config::{AgentConfig, TablesOnGateway};
use chitti_common::protocol::{DesiredConfig, Topic, TopicKind};
use chitti_common::signing::sign_desired_config;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the publisher checks the store without being told.
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(30);

/// Longest desired document accepted, in bytes (the agent's whole file).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Checks a desired document for `site/gateway` with the agent's validation, as far as
/// it can be known away from the gateway (its folders, devices and user severity tables
/// are checked there): every problem, one `path: problem` line each.
pub fn validate_document(
    site: &str,
    gateway: &str,
    text: &str,
) -> Result<AgentConfig, Vec<String>> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![format!(
            "config: {} bytes, at most {MAX_DOCUMENT_BYTES}",
            text.len()
        )]);
    }
    // The identity is checked even when the rest does not validate, so that a
    // document meant for another gateway says so among its other problems.
    let mut problems = Vec::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        let identity = table.get("identity");
        for (key, want) in [("site", site), ("gateway", gateway)] {
            match identity.and_then(|i| i.get(key)).and_then(|v| v.as_str()) {
                Some(found) if found != want => problems.push(format!(
                    "identity.{key}: {found:?}, but this is the configuration of {site}/{gateway}"
                )),
                _ => {}
            }
        }
    }
    // Relative paths are the gateway's to resolve; any base will do for checking.
    match AgentConfig::parse(text, "config", Path::new("/"), &TablesOnGateway) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(problems),
        Err(e) => {
            problems.extend(e.errors.iter().map(ToString::to_string));
            Err(problems)
        }
    }
}

/// Publishes each gateway's newest desired document and desired model
/// ([`crate::rollouts`]), signed and retained.
pub struct ConfigPublisher<S> {
    store: Arc<S>,
    bus: Arc<HubBus>,
    key: Arc<ed25519_dalek::SigningKey>,
    signal: Arc<Notify>,
    /// What this process has handed to the broker, per gateway.
    published: HashMap<(String, String), i64>,
    /// The desired-model seqs this process has handed to the broker, per gateway.
    published_models: HashMap<(String, String), i64>,
}

impl<S: Store + 'static> ConfigPublisher<S> {
    /// A publisher over `store` through `bus`, woken by `signal` after a save.
    pub fn new(
        store: Arc<S>,
        bus: Arc<HubBus>,
        key: Arc<ed25519_dalek::SigningKey>,
        signal: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            bus,
            key,
            signal,
            published: HashMap::new(),
            published_models: HashMap::new(),
        }
    }

    /// Runs until `stop` completes.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            self.publish_due().await;
            tokio::select! {
                _ = &mut stop => return,
                _ = self.signal.notified() => {}
                _ = tokio::time::sleep(REPUBLISH_EVERY) => {}
            }
        }
    }

    /// Publishes every newest version (configuration and model) not yet published by
    /// this process; what fails (the store or the broker away) is tried again at the
    /// next pass.
    pub async fn publish_due(&mut self) {
        self.publish_configs_due().await;
        self.publish_models_due().await;
    }

    async fn publish_models_due(&mut self) {
        let seqs = match self.store.desired_model_seqs().await {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(%err, "desired models: cannot read the store; trying again");
                return;
            }
        };
        for (site, gateway, seq) in seqs {
            let key = (site, gateway);
            if self.published_models.get(&key) == Some(&seq) {
                continue;
            }
            let (site, gateway) = &key;
            match crate::rollouts::publish_desired_model(
                &*self.store,
                &self.bus,
                &self.key,
                site,
                gateway,
            )
            .await
            {
                Ok(sent) => {
                    tracing::info!(%site, %gateway, seq = sent, "desired model published");
                    self.published_models.insert(key, sent);
                }
                Err(err) => {
                    tracing::warn!(%site, %gateway, seq, %err, "cannot publish the desired model; trying again");
                }
            }
        }
    }

    async fn publish_configs_due(&mut self) {
        let versions = match self.store.desired_versions().await {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(%err, "desired configurations: cannot read the store; trying again");
                return;
            }
        };
        for (site, gateway, version) in versions {
            let key = (site, gateway);
            if self.published.get(&key) == Some(&version) {
                continue;
            }
            let (site, gateway) = &key;
            match self.publish(site, gateway, version).await {
                Ok(()) => {
                    tracing::info!(%site, %gateway, version, "desired configuration published");
                    self.published.insert(key, version);
                }
                Err(err) => {
                    tracing::warn!(%site, %gateway, version, %err, "cannot publish the desired configuration; trying again");
                }
            }
        }
    }

    async fn publish(&self, site: &str, gateway: &str, version: i64) -> Result<(), String> {
        let record = self
            .store
            .desired_config(site, gateway, version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the version is gone")?;
        let topic = Topic::new(site, gateway, TopicKind::ConfigSet)
            .map_err(|e| e.to_string())?
            .to_string();
        let desired = DesiredConfig {
            version: u64::try_from(record.version).map_err(|e| e.to_string())?,
            config: record.document,
            issued_at: record.created_at,
        };
        let payload = sign_desired_config(&topic, &desired, &self.key)?;
        self.bus
            .publish(&topic, payload, true)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Most keys one group change may set.
pub const MAX_CHANGE_KEYS: usize = 64;

/// `text` (an agent configuration) with each of `set`'s keys — dotted paths into the
/// file, `[n]` for the n-th table of an array (`camera[0].table`) — set to its value
/// (`null` removes the key, so the agent's default applies). The identity cannot be
/// set this way: a change for many gateways must not make them one.
pub fn apply_settings(
    text: &str,
    set: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<String, Vec<String>> {
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![format!("the document: {}", e.message())])?;
    let mut problems = Vec::new();
    for (key, value) in set {
        if let Err(problem) = set_key(&mut doc, key, value) {
            problems.push(format!("{key}: {problem}"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    toml::to_string(&doc).map_err(|e| vec![format!("the document: {e}")])
}

fn set_key(doc: &mut toml::Table, key: &str, value: &serde_json::Value) -> Result<(), String> {
    if key == "identity" || key.starts_with("identity.") || key == "version" {
        return Err("is the gateway's own: a change to a group cannot set it".into());
    }
    let new = if value.is_null() {
        None
    } else {
        Some(toml::Value::try_from(value).map_err(|e| format!("not a TOML value: {e}"))?)
    };
    let mut parts = Vec::new();
    for part in key.split('.') {
        let (name, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            Some((name, i)) => (
                name,
                Some(
                    i.parse::<usize>()
                        .map_err(|_| format!("{part:?}: the index must be a number"))?,
                ),
            ),
            None => (part, None),
        };
        if name.is_empty() {
            return Err("an empty key".into());
        }
        parts.push((name, index));
    }
    let Some(((last, last_index), path)) = parts.split_last() else {
        return Err("an empty key".into());
    };
    if last_index.is_some() {
        return Err("must end with a key, not an index".into());
    }
    let mut table = doc;
    for (name, index) in path {
        let entry = table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match (entry, index) {
            (toml::Value::Table(t), None) => t,
            (toml::Value::Array(items), Some(i)) => {
                let len = items.len();
                match items.get_mut(*i) {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => return Err(format!("{name}[{i}] is not a table")),
                    None => return Err(format!("{name} has {len} entries, no [{i}]")),
                }
            }
            (_, Some(_)) => return Err(format!("{name} is not an array of tables")),
            (_, None) => return Err(format!("{name} is not a table")),
        };
    }
    match new {
        Some(v) => {
            table.insert(last.to_string(), v);
        }
        None => {
            table.remove(*last);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOC: &str = "version = 1\n[identity]\nsite = \"n\"\ngateway = \"g\"\n\
        [[camera]]\nid = \"a\"\n[camera.source]\nkind = \"simulated\"\n\
        [[camera]]\nid = \"b\"\n[camera.source]\nkind = \"simulated\"\n";

    #[test]
    fn settings_reach_sections_arrays_and_remove_keys() {
        let set = [
            ("analysis.tracking.raise_after_frames", json!(3)),
            ("camera[1].table", json!("neta-ambient")),
            ("health.status_interval_s", json!(45)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let text = apply_settings(DOC, &set).unwrap();
        let config = validate_document("n", "g", &text).unwrap();
        assert_eq!(config.analysis.tracking.raise_after_frames, 3);
        assert_eq!(config.cameras[1].table.as_deref(), Some("neta-ambient"));
        assert_eq!(config.cameras[0].table, None);
        assert_eq!(config.health.status_interval_s, 45);
        let removed = [("health.status_interval_s".to_string(), json!(null))].into();
        let back = validate_document("n", "g", &apply_settings(&text, &removed).unwrap()).unwrap();
        assert_eq!(
            back.health.status_interval_s,
            chitti_common::agent_config::HealthConfig::default().status_interval_s
        );
    }

    #[test]
    fn bad_settings_are_named_each() {
        let set = [
            ("identity.gateway", json!("x")),
            ("camera[5].table", json!("t")),
            ("camera[x].table", json!("t")),
            ("version.minor", json!(1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let problems = apply_settings(DOC, &set).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p == "camera[5].table: camera has 2 entries, no [5]"),
            "{problems:?}"
        );
    }
}
