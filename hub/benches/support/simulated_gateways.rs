//! The simulated gateways of the MQTT benchmarks (`benches/ingest_load.rs`,
//! `benches/config_rollout.rs`, each including this file with `#[path = "..."]`): ids
//! and an Ed25519 key drawn from the gateway's index, a hundred gateways per site.

use chitti_common::protocol::{Topic, TopicKind};
use chitti_common::signing::signing_key_from_seed;
use ed25519_dalek::SigningKey;

/// One simulated gateway.
pub struct GatewaySpec {
    pub site: String,
    pub gateway: String,
    pub key: SigningKey,
}

impl GatewaySpec {
    /// Gateway `index` (`site-{index / 100}/gw-{index}`); `salt` keeps one benchmark's
    /// keys apart from another's.
    pub fn new(index: usize, salt: u8) -> Self {
        let mut seed = [salt; 32];
        seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
        Self {
            site: format!("site-{}", index / 100),
            gateway: format!("gw-{index}"),
            key: signing_key_from_seed(&seed),
        }
    }

    /// One of its topics.
    pub fn topic(&self, kind: TopicKind) -> String {
        Topic::new(&self.site, &self.gateway, kind)
            .expect("valid ids")
            .to_string()
    }
}
