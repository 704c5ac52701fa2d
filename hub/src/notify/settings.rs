//! Channels and rules edited by admins (API and dashboard), beside those of the hub's
//! file.
//!
//! The file's `[notifications]` stays the infrastructure-as-code part (and the only
//! place for the SMTP relay and the timings); the store keeps one more document of
//! channels and rules, versioned (`ETag` / `If-Match` on the API, a stale edit is 409).
//! The notifier runs on both together ([`merge`]): an id may be defined in one place
//! only, and the whole is validated like the file, every problem at once, with paths
//! into the document (`channels[1].url`).
//!
//! Secrets (a webhook's `secret`, a PagerDuty `routing_key`, every `url`: Slack and
//! Teams URLs carry their token) are never shown again: the document an admin reads has
//! [`KEPT`] in their place, and [`KEPT`] written back keeps the stored value. A webhook
//! channel written without a secret gets a fresh one, shown once in the answer.

use super::config::{ChannelConfig, ChannelKind, NotificationsConfig, RuleConfig};
use super::signature::WebhookSecret;
use chitti_common::config::{ConfigError, Problems};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What a secret reads as when shown, and means "keep the stored one" when written.
pub use chitti_common::config::KEPT_SECRET as KEPT;

/// The channels and rules kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsDocument {
    /// Channels, as `[[notifications.channels]]` in the file.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Rules, as `[[notifications.rules]]` in the file.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl SettingsDocument {
    /// Parses the document as TOML (`[[channels]]`, `[[rules]]`), every problem at once.
    pub fn from_toml(text: &str) -> Result<Self, Vec<ConfigError>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![ConfigError {
                path: String::new(),
                message: e.message().to_string(),
            }]
        })?;
        let mut p = Problems::default();
        let doc = p.decode::<Self>("", toml::Value::Table(table));
        match doc {
            Some(doc) if p.is_empty() => Ok(doc),
            _ => Err(p.into_inner()),
        }
    }

    /// The document as TOML, secrets replaced by [`KEPT`].
    pub fn to_toml_redacted(&self) -> String {
        toml::to_string(&self.redacted()).unwrap_or_default()
    }

    /// The same document with every secret replaced by [`KEPT`].
    pub fn redacted(&self) -> Self {
        let mut doc = self.clone();
        for c in &mut doc.channels {
            for field in [&mut c.url, &mut c.secret, &mut c.routing_key] {
                if field.is_some() {
                    *field = Some(KEPT.to_string());
                }
            }
        }
        doc
    }

    /// Fills [`KEPT`] from `stored` (the same channel id) and gives every webhook
    /// without a secret a new one. Returns the new secrets by channel id (to show once).
    pub fn resolve_secrets(
        &mut self,
        stored: &SettingsDocument,
    ) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
        let mut problems = Vec::new();
        let mut fresh = BTreeMap::new();
        for (i, c) in self.channels.iter_mut().enumerate() {
            let old = stored.channels.iter().find(|o| o.id == c.id);
            for (name, field, was) in [
                ("url", &mut c.url, old.and_then(|o| o.url.clone())),
                ("secret", &mut c.secret, old.and_then(|o| o.secret.clone())),
                (
                    "routing_key",
                    &mut c.routing_key,
                    old.and_then(|o| o.routing_key.clone()),
                ),
            ] {
                if field.as_deref() == Some(KEPT) {
                    match was {
                        Some(value) => *field = Some(value),
                        None => problems.push(ConfigError {
                            path: format!("channels[{i}].{name}"),
                            message: format!(
                                "{KEPT} keeps a stored value, but channel {:?} has none",
                                c.id
                            ),
                        }),
                    }
                }
            }
            if c.kind == ChannelKind::Webhook && c.secret.is_none() {
                match WebhookSecret::generate() {
                    Ok(secret) => {
                        let text = secret.reveal();
                        fresh.insert(c.id.clone(), text.clone());
                        c.secret = Some(text);
                    }
                    Err(e) => problems.push(ConfigError {
                        path: format!("channels[{i}].secret"),
                        message: format!("cannot draw a secret: {e}"),
                    }),
                }
            }
        }
        if problems.is_empty() {
            Ok(fresh)
        } else {
            Err(problems)
        }
    }
}

/// The configuration the notifier runs: the file's, plus the document's channels and
/// rules. Problems name paths in the document (`channels[0].url`); an id the file
/// already defines is one.
pub fn merge(
    file: &NotificationsConfig,
    doc: &SettingsDocument,
) -> Result<NotificationsConfig, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let taken = |kind: &str, file_ids: Vec<&str>, doc_ids: Vec<&str>, problems: &mut Vec<_>| {
        let file_ids: HashSet<&str> = file_ids.into_iter().collect();
        for (i, id) in doc_ids.into_iter().enumerate() {
            if file_ids.contains(id) {
                problems.push(ConfigError {
                    path: format!("{kind}[{i}].id"),
                    message: format!("{id:?} is defined in the hub's configuration file"),
                });
            }
        }
    };
    taken(
        "channels",
        file.channels.iter().map(|c| c.id.as_str()).collect(),
        doc.channels.iter().map(|c| c.id.as_str()).collect(),
        &mut problems,
    );
    taken(
        "rules",
        file.rules.iter().map(|r| r.id.as_str()).collect(),
        doc.rules.iter().map(|r| r.id.as_str()).collect(),
        &mut problems,
    );
    let mut merged = file.clone();
    merged.channels.extend(doc.channels.iter().cloned());
    merged.rules.extend(doc.rules.iter().cloned());
    let mut p = Problems::default();
    merged.validate_into(&mut p);
    let (nc, nr) = (file.channels.len(), file.rules.len());
    for e in p.into_inner() {
        // Paths of the merged whole, back to the document's own indices; a problem of
        // the file's own part was refused when the hub started.
        let path = e.path.strip_prefix("notifications.").unwrap_or(&e.path);
        let renumbered = renumber(path, "channels[", nc).or_else(|| renumber(path, "rules[", nr));
        match renumbered {
            Some(path) => problems.push(ConfigError {
                path,
                message: e.message,
            }),
            None if path.starts_with("channels[") || path.starts_with("rules[") => {}
            None => problems.push(ConfigError {
                path: path.to_string(),
                message: e.message,
            }),
        }
    }
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

/// What the notifier runs on: the file's configuration and the stored document merged,
/// or — when the document no longer fits the file (an id the file defines too since
/// it was saved) — the file's alone, with the problems.
pub fn effective(
    file: &NotificationsConfig,
    stored: Option<&crate::store::StoredSettings>,
) -> (NotificationsConfig, Vec<ConfigError>) {
    let Some(stored) = stored else {
        return (file.clone(), Vec::new());
    };
    let doc = match serde_json::from_value::<SettingsDocument>(stored.document.clone()) {
        Ok(doc) => doc,
        Err(e) => {
            let problem = ConfigError {
                path: String::new(),
                message: format!("stored notification settings do not decode: {e}"),
            };
            return (file.clone(), vec![problem]);
        }
    };
    match merge(file, &doc) {
        Ok(config) => (config, Vec::new()),
        Err(problems) => (file.clone(), problems),
    }
}

/// `channels[7].url` with 5 file channels → `channels[2].url`; `None` for the file's own.
fn renumber(path: &str, prefix: &str, offset: usize) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    let (index, tail) = rest.split_once(']')?;
    let index: usize = index.parse().ok()?;
    let own = index.checked_sub(offset)?;
    Some(format!("{prefix}{own}]{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> NotificationsConfig {
        crate::config::HubConfig::from_toml(
            r#"
version = 1
[[notifications.channels]]
id = "noc"
kind = "webhook"
url = "https://noc.example.net/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[notifications.rules]]
id = "critical"
min_level = 3
channels = ["noc"]
"#,
            "hub.toml",
            std::path::Path::new("/"),
        )
        .unwrap()
        .notifications
    }

    #[test]
    fn problems_point_into_the_document_and_file_ids_are_taken() {
        let doc = SettingsDocument::from_toml(
            r#"
[[channels]]
id = "noc"
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"
[[channels]]
id = "ops-slack"
kind = "slack"
[[rules]]
id = "fleet"
kinds = ["fleet"]
channels = ["noc", "nowhere"]
"#,
        )
        .unwrap();
        let problems: Vec<String> = merge(&file(), &doc)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            problems.iter().any(|p| p
                .starts_with("channels[0].id: \"noc\" is defined in the hub's configuration file")),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("channels[1].url")),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("rules[0].channels") && p.contains("nowhere")),
            "{problems:#?}"
        );
    }

    #[test]
    fn secrets_are_kept_redacted_and_drawn_for_new_webhooks() {
        let stored = SettingsDocument::from_toml(
            r#"
[[channels]]
id = "pd"
kind = "pagerduty"
routing_key = "R0UT1NGK3Y"
"#,
        )
        .unwrap();
        assert!(!stored.to_toml_redacted().contains("R0UT1NGK3Y"));
        let mut edit = SettingsDocument::from_toml(&format!(
            "{}\n[[channels]]\nid = \"scada\"\nkind = \"webhook\"\nurl = \"https://scada.example.net/in\"\n",
            stored.to_toml_redacted()
        ))
        .unwrap();
        let fresh = edit.resolve_secrets(&stored).unwrap();
        assert_eq!(edit.channels[0].routing_key.as_deref(), Some("R0UT1NGK3Y"));
        assert!(fresh["scada"].starts_with("whsec_"));
        assert_eq!(edit.channels[1].secret.as_ref(), Some(&fresh["scada"]));
        let mut bad = SettingsDocument::from_toml(
            "[[channels]]\nid = \"new\"\nkind = \"slack\"\nurl = \"(kept)\"\n",
        )
        .unwrap();
        let e = bad.resolve_secrets(&stored).unwrap_err();
        assert_eq!(e[0].path, "channels[0].url");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = SettingsDocument::from_toml("[[rules]]\nid = \"x\"\nlevel = 3\n").unwrap_err();
        assert!(e.iter().any(|e| e.to_string().contains("level")), "{e:?}");
    }
}
