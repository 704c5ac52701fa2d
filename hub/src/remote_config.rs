//! Remote configuration on the hub (issue #19; DESIGN.md §9): a gateway's desired
//! document is validated with the agent's own code (`chitti_common::agent_config`),
//! saved with a new version ([`GatewayConfigStore`]), and published by the
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

/// Publishes each gateway's newest desired document, signed and retained.
pub struct ConfigPublisher<S> {
    store: Arc<S>,
    bus: Arc<HubBus>,
    key: Arc<ed25519_dalek::SigningKey>,
    signal: Arc<Notify>,
    /// What this process has handed to the broker, per gateway.
    published: HashMap<(String, String), i64>,
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

    /// Publishes every newest version not yet published by this process; what fails
    /// (the store or the broker away) is tried again at the next pass.
    pub async fn publish_due(&mut self) {
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
