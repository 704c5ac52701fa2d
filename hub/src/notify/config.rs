//! The `[notifications]` section of the hub's configuration: the SMTP relay, the
//! channels messages go to, and the rules that pick channels for alerts and escalate
//! them. Validated with every problem reported at once, like the rest of the file.

use super::signature::WebhookSecret;
use chitti_common::config::Problems;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// PagerDuty's Events API v2 endpoint, the default `url` of a `pagerduty` channel.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Every alert kind a rule may name: thermal alerts (a hotspot, or a cool exception:
/// a component far colder than its sibling phases), the fleet's own alarms, and the
/// groups `thermal` (both thermal kinds) and `fleet` (every fleet alarm).
pub const ALERT_KINDS: &[&str] = crate::store::KindFilter::NAMES;

/// Notifications: where alerts are sent and when they escalate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The SMTP relay e-mail channels send through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// Where messages go.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Which alerts go to which channels, and their escalation.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Base URL of the dashboard, for links in messages (default: the first of
    /// `http.public_origins`, else no links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// How often the notifier looks for work when nothing woke it, ms.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// How long a sender owns a message it claimed; a hub that dies mid-send leaves it
    /// to another sender (or itself, restarted) after this, seconds.
    #[serde(default = "default_lease_s")]
    pub claim_lease_s: u64,
    /// Longest wait between two attempts at one message, seconds.
    #[serde(default = "default_max_backoff_s")]
    pub max_backoff_s: u64,
    /// A message still not delivered this long after it was queued is given up
    /// (failed, shown), seconds. Three days, as Standard Webhooks retries.
    #[serde(default = "default_give_up_s")]
    pub give_up_after_s: u64,
    /// One HTTP or SMTP exchange may take this long, seconds.
    #[serde(default = "default_send_timeout_s")]
    pub send_timeout_s: u64,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network).
    None,
    /// Plain, upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The SMTP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name (also the name its certificate must carry).
    pub host: String,
    /// Port (default: 587 for STARTTLS, 465 for TLS, 25 for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The sender, `Chitti <chitti@example.net>`.
    pub from: String,
    /// none | starttls | tls.
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name, when the relay wants authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A CA (PEM) the relay's certificate is checked against besides the public roots
    /// (a relay with a company certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl SmtpConfig {
    /// The port, defaulted by the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// E-mail through `[notifications.smtp]`.
    Email,
    /// A JSON POST signed per Standard Webhooks.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams Workflows webhook (an Adaptive Card).
    Teams,
    /// PagerDuty Events API v2.
    Pagerduty,
}

impl ChannelKind {
    /// The configured (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Pagerduty => "pagerduty",
        }
    }
}

/// One place messages go.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Name rules refer to (`[a-z0-9_-]`).
    pub id: String,
    /// email | webhook | slack | teams | pagerduty.
    pub kind: ChannelKind,
    /// Recipients, for e-mail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The endpoint, for the others (PagerDuty's default: its events endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The signing secret of a webhook, `whsec_<base64>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A PagerDuty service's integration (routing) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// Most messages a minute (default: Slack 60, Teams and e-mail 30, webhooks and
    /// PagerDuty unlimited). Beyond it, what waits for an e-mail, Slack or Teams channel
    /// goes out as one digest; for a webhook or PagerDuty it waits its turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    /// Hours when only alerts at `quiet_bypass_level` or above go out at once, as
    /// `"22:00-06:00"` in `timezone`; the rest wait for the end (never dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    /// The IANA time zone of `quiet_hours` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The level that is sent even in quiet hours (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_bypass_level: Option<u8>,
}

/// A channel's quiet hours, parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietHours {
    start: chrono::NaiveTime,
    end: chrono::NaiveTime,
    tz: chrono_tz::Tz,
    /// Levels at or above this are sent at once.
    pub bypass_level: u8,
}

impl QuietHours {
    /// `"HH:MM-HH:MM"` in `timezone` (default UTC).
    pub fn parse(window: &str, timezone: Option<&str>, bypass_level: u8) -> Result<Self, String> {
        let (start, end) = window
            .split_once('-')
            .ok_or_else(|| format!("{window:?} is not HH:MM-HH:MM"))?;
        let time = |t: &str| {
            chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("{t:?} is not HH:MM"))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err("an empty window (start equals end)".into());
        }
        let tz = match timezone {
            None => chrono_tz::UTC,
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("{name:?} is not an IANA time zone (e.g. Europe/Berlin)"))?,
        };
        Ok(Self {
            start,
            end,
            tz,
            bypass_level,
        })
    }

    /// When the quiet window that `at` falls in ends; `None` outside quiet hours.
    pub fn held_until(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        let local = at.with_timezone(&self.tz);
        let (date, time) = (local.date_naive(), local.time());
        let end_date = if self.start < self.end {
            (self.start <= time && time < self.end).then_some(date)?
        } else if time >= self.start {
            date.succ_opt()?
        } else if time < self.end {
            date
        } else {
            return None;
        };
        let end = end_date.and_time(self.end);
        // A wall-clock end that does not exist (a DST gap) is taken an hour later.
        let resolved = self.tz.from_local_datetime(&end).earliest().or_else(|| {
            self.tz
                .from_local_datetime(&(end + chrono::Duration::hours(1)))
                .earliest()
        })?;
        Some(resolved.with_timezone(&chrono::Utc))
    }
}

// Secrets stay out of logs, even a debug print of the configuration.
impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("rate_per_minute", &self.rate_per_minute)
            .field("quiet_hours", &self.quiet_hours)
            .field("timezone", &self.timezone)
            .finish()
    }
}

/// A URL with its path and query hidden: Slack and Teams webhook URLs carry their
/// secret in the path.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            format!("{scheme}://{host}/…")
        }
        None => "<not a URL>".into(),
    }
}

impl ChannelConfig {
    /// The channel's rate limit, messages a minute (`None`: unlimited).
    pub fn rate_per_minute(&self) -> Option<u32> {
        self.rate_per_minute.or(match self.kind {
            // Slack's incoming webhooks allow about one message a second.
            ChannelKind::Slack => Some(60),
            ChannelKind::Teams | ChannelKind::Email => Some(30),
            ChannelKind::Webhook | ChannelKind::Pagerduty => None,
        })
    }

    /// The channel's quiet hours (validated at load; `None` when unset).
    pub fn quiet(&self) -> Option<QuietHours> {
        let window = self.quiet_hours.as_deref()?;
        QuietHours::parse(
            window,
            self.timezone.as_deref(),
            self.quiet_bypass_level.unwrap_or(3),
        )
        .ok()
    }

    /// Whether waiting messages may go out as one digest (people read these; machines
    /// and PagerDuty's per-alert incidents need one message each).
    pub fn digests(&self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Email | ChannelKind::Slack | ChannelKind::Teams
        )
    }

    /// Where this channel posts (the configured URL, or PagerDuty's endpoint).
    pub fn endpoint(&self) -> Option<&str> {
        match (self.kind, self.url.as_deref()) {
            (_, Some(url)) => Some(url),
            (ChannelKind::Pagerduty, None) => Some(PAGERDUTY_EVENTS_URL),
            _ => None,
        }
    }
}

/// Which alerts go where, and what happens when nobody acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name, shown in the delivery log.
    pub id: String,
    /// Lowest severity level that matches (0–4).
    #[serde(default = "default_min_level")]
    pub min_level: u8,
    /// Alert kinds that match; empty: every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Sites that match; empty: every site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
    /// Gateways (`site/gateway`) that match; empty: every gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Component classes (asset classes: `bushing`, `clamp`, …) that match; empty:
    /// every class, and alerts without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_classes: Vec<String>,
    /// Channels told of every transition of a matching alert.
    #[serde(default)]
    pub channels: Vec<String>,
    /// An open alert not acknowledged this long after it was raised goes to
    /// `escalate_to`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after_s: Option<u64>,
    /// The escalation's channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<String>,
    /// After escalating, repeat to `escalate_to` this often until someone acts, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every_s: Option<u64>,
    /// Most repeats (default 5, as Grafana OnCall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_repeats: Option<u32>,
    /// A `level_up` of an alert within this long of its last message to a channel
    /// waits for the end (and a later level supersedes it), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_s: Option<u64>,
    /// A gateway's cool-down (flapping): a new alert or level of a gateway, no worse
    /// than what a channel was told of that gateway's other alerts within this long,
    /// waits for the end and goes out with the others that waited, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_cooldown_s: Option<u64>,
}

/// Repeats of an escalation when `max_repeats` is not set.
pub const DEFAULT_MAX_REPEATS: u32 = 5;

impl RuleConfig {
    /// How many times the escalation repeats after its first step.
    pub fn repeats(&self) -> u32 {
        if self.repeat_every_s.is_some() {
            self.max_repeats.unwrap_or(DEFAULT_MAX_REPEATS)
        } else {
            0
        }
    }
}

fn default_min_level() -> u8 {
    1
}
fn default_poll_ms() -> u64 {
    500
}
fn default_lease_s() -> u64 {
    60
}
fn default_max_backoff_s() -> u64 {
    3600
}
fn default_give_up_s() -> u64 {
    3 * 24 * 3600
}
fn default_send_timeout_s() -> u64 {
    10
}

chitti_common::defaults_from_serde!(NotificationsConfig);

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_http_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
    })
}

/// `name@host`, or `Name <name@host>`: the shape, not deliverability.
pub(crate) fn is_mailbox(s: &str) -> bool {
    s.parse::<lettre::message::Mailbox>().is_ok()
}

impl NotificationsConfig {
    /// The files this section names, for resolving relative paths.
    pub fn paths_mut(&mut self) -> Vec<&mut Option<PathBuf>> {
        match &mut self.smtp {
            Some(smtp) => vec![&mut smtp.password_file, &mut smtp.ca_file],
            None => Vec::new(),
        }
    }

    /// Checks every value; problems are pushed under `notifications.…`.
    pub fn validate_into(&self, p: &mut Problems) {
        let at = |rest: String| format!("notifications.{rest}");
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                p.push(at("smtp.host".into()), "must not be empty");
            }
            if !is_mailbox(&smtp.from) {
                p.push(
                    at("smtp.from".into()),
                    format!("{:?} is not an e-mail address", smtp.from),
                );
            }
            if smtp.username.is_some() != smtp.password_file.is_some() {
                p.push(
                    at("smtp.password_file".into()),
                    "username and password_file go together",
                );
            }
            if smtp.username.is_some() && smtp.tls == SmtpTls::None {
                p.push(
                    at("smtp.tls".into()),
                    "a password is never sent in clear: use starttls or tls with a username",
                );
            }
        }
        let mut ids = HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let key = |k: &str| at(format!("channels[{i}].{k}"));
            if !is_name(&c.id) {
                p.push(key("id"), format!("{:?} must be 1–64 of a-z 0-9 _ -", c.id));
            } else if !ids.insert(c.id.as_str()) {
                p.push(key("id"), format!("{:?} is used by another channel", c.id));
            }
            if let Some(window) = &c.quiet_hours {
                if let Err(e) = QuietHours::parse(window, c.timezone.as_deref(), 3) {
                    p.push(key("quiet_hours"), e);
                }
            } else if c.timezone.is_some() || c.quiet_bypass_level.is_some() {
                p.push(
                    key("timezone"),
                    "timezone and quiet_bypass_level go with quiet_hours",
                );
            }
            if c.quiet_bypass_level.is_some_and(|l| l > 4) {
                p.push(key("quiet_bypass_level"), "must be 0–4");
            }
            if c.rate_per_minute.is_some_and(|r| !(1..=6000).contains(&r)) {
                p.push(key("rate_per_minute"), "must be 1–6000");
            }
            let wants_url = c.kind != ChannelKind::Email;
            match (c.kind, &c.url) {
                (ChannelKind::Email, Some(_)) => p.push(key("url"), "e-mail channels take `to`"),
                (ChannelKind::Pagerduty, None) => {}
                (_, None) if wants_url => p.push(
                    key("url"),
                    format!("missing: a {} channel needs its URL", c.kind.as_str()),
                ),
                (_, Some(url)) if !is_http_url(url) => p.push(
                    key("url"),
                    format!("{} is not an http(s) URL", redact_url(url)),
                ),
                _ => {}
            }
            if c.kind == ChannelKind::Email {
                if c.to.is_empty() {
                    p.push(key("to"), "missing: an e-mail channel needs recipients");
                }
                for (j, to) in c.to.iter().enumerate() {
                    if !is_mailbox(to) {
                        p.push(
                            at(format!("channels[{i}].to[{j}]")),
                            format!("{to:?} is not an e-mail address"),
                        );
                    }
                }
                if self.smtp.is_none() {
                    p.push(key("kind"), "an e-mail channel needs [notifications.smtp]");
                }
            } else if !c.to.is_empty() {
                p.push(key("to"), "only e-mail channels take `to`");
            }
            match (c.kind, &c.secret) {
                (ChannelKind::Webhook, None) => p.push(
                    key("secret"),
                    "missing: a webhook is signed with a secret `whsec_<base64>` \
                     (make one with `chitti-hub notify new-secret`)",
                ),
                (ChannelKind::Webhook, Some(s)) => {
                    if let Err(e) = WebhookSecret::parse(s) {
                        p.push(key("secret"), e.to_string());
                    }
                }
                (_, Some(_)) => p.push(key("secret"), "only webhook channels are signed"),
                _ => {}
            }
            match (c.kind, &c.routing_key) {
                (ChannelKind::Pagerduty, None) => p.push(
                    key("routing_key"),
                    "missing: the integration key of the PagerDuty service",
                ),
                (ChannelKind::Pagerduty, Some(k)) if k.trim().is_empty() || k.len() > 64 => {
                    p.push(key("routing_key"), "must be 1–64 characters")
                }
                (ChannelKind::Pagerduty, Some(_)) | (_, None) => {}
                (_, Some(_)) => p.push(key("routing_key"), "only PagerDuty channels take one"),
            }
        }
        let mut rule_ids = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let key = |k: &str| at(format!("rules[{i}].{k}"));
            if !is_name(&r.id) {
                p.push(key("id"), format!("{:?} must be 1–64 of a-z 0-9 _ -", r.id));
            } else if !rule_ids.insert(r.id.as_str()) {
                p.push(key("id"), format!("{:?} is used by another rule", r.id));
            }
            if r.min_level > 4 {
                p.push(key("min_level"), "must be 0–4");
            }
            for kind in &r.kinds {
                if !ALERT_KINDS.contains(&kind.as_str()) {
                    p.push(
                        key("kinds"),
                        format!(
                            "unknown kind {kind:?} (expected {})",
                            ALERT_KINDS.join(", ")
                        ),
                    );
                }
            }
            for gateway in &r.gateways {
                if !gateway.contains('/') {
                    p.push(key("gateways"), format!("{gateway:?} is not site/gateway"));
                }
            }
            for (list, name) in [(&r.channels, "channels"), (&r.escalate_to, "escalate_to")] {
                for id in list {
                    if !ids.contains(id.as_str()) {
                        p.push(key(name), format!("no channel has the id {id:?}"));
                    }
                }
            }
            if r.channels.is_empty() && r.escalate_to.is_empty() {
                p.push(key("channels"), "the rule sends nowhere");
            }
            if r.escalate_after_s.is_some() == r.escalate_to.is_empty() {
                p.push(
                    key("escalate_after_s"),
                    "escalate_after_s and escalate_to go together",
                );
            }
            if r.escalate_after_s == Some(0) {
                p.push(key("escalate_after_s"), "must be at least 1");
            }
            if r.repeat_every_s.is_some() && r.escalate_after_s.is_none() {
                p.push(
                    key("repeat_every_s"),
                    "repeats follow an escalation: set escalate_after_s",
                );
            }
            if r.repeat_every_s == Some(0) {
                p.push(key("repeat_every_s"), "must be at least 1");
            }
            if r.gateway_cooldown_s == Some(0) {
                p.push(
                    key("gateway_cooldown_s"),
                    "must be at least 1 (or left out)",
                );
            }
            if r.cooldown_s == Some(0) {
                p.push(key("cooldown_s"), "must be at least 1 (or left out)");
            }
            if r.max_repeats.is_some() && r.repeat_every_s.is_none() {
                p.push(key("max_repeats"), "needs repeat_every_s");
            }
        }
        if let Some(url) = &self.dashboard_url {
            if !is_http_url(url) {
                p.push(at("dashboard_url".into()), "must be an http(s) URL");
            }
        }
        for (name, v) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("claim_lease_s", self.claim_lease_s),
            ("max_backoff_s", self.max_backoff_s),
            ("give_up_after_s", self.give_up_after_s),
            ("send_timeout_s", self.send_timeout_s),
        ] {
            if v == 0 {
                p.push(at(name.into()), "must be at least 1");
            }
        }
        if self.claim_lease_s <= self.send_timeout_s {
            p.push(
                at("claim_lease_s".into()),
                "must be longer than send_timeout_s (a slow send would be claimed twice)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::HubConfig;
    use std::path::Path;

    #[test]
    fn every_notification_problem_is_reported_at_once() {
        let text = r#"
version = 1
[notifications]
claim_lease_s = 5
[notifications.smtp]
host = "smtp.example.net"
from = "not an address"
tls = "none"
username = "chitti"
password_file = "pw"
[[notifications.channels]]
id = "Ops Mail"
kind = "email"
to = ["ops@example.net", "nobody"]
[[notifications.channels]]
id = "hook"
kind = "webhook"
url = "ftp://x"
secret = "whsec_c2hvcnQ="
[[notifications.channels]]
id = "hook"
kind = "slack"
[[notifications.channels]]
id = "pd"
kind = "pagerduty"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[notifications.rules]]
id = "r1"
min_level = 7
kinds = ["hotspot", "volcano"]
channels = ["hook", "nowhere"]
escalate_to = ["pd"]
repeat_every_s = 60
[[notifications.rules]]
id = "r1"
max_repeats = 3
"#;
        let message = HubConfig::from_toml(text, "hub.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        for expected in [
            "notifications.smtp.from: \"not an address\" is not an e-mail address",
            "notifications.smtp.tls: a password is never sent in clear",
            "notifications.channels[0].id: \"Ops Mail\" must be",
            "notifications.channels[0].to[1]: \"nobody\" is not an e-mail address",
            "notifications.channels[1].url: ftp://x/… is not an http(s) URL",
            "notifications.channels[1].secret:",
            "notifications.channels[2].id: \"hook\" is used by another channel",
            "notifications.channels[2].url: missing: a slack channel needs its URL",
            "notifications.channels[3].routing_key: missing",
            "notifications.channels[3].secret: only webhook channels are signed",
            "notifications.rules[0].min_level: must be 0–4",
            "notifications.rules[0].kinds: unknown kind \"volcano\"",
            "notifications.rules[0].channels: no channel has the id \"nowhere\"",
            "notifications.rules[0].escalate_after_s: escalate_after_s and escalate_to go together",
            "notifications.rules[0].repeat_every_s: repeats follow an escalation",
            "notifications.rules[1].id: \"r1\" is used by another rule",
            "notifications.rules[1].channels: the rule sends nowhere",
            "notifications.rules[1].max_repeats: needs repeat_every_s",
            "notifications.claim_lease_s: must be longer than send_timeout_s",
        ] {
            assert!(
                message.contains(expected),
                "{expected} missing in\n{message}"
            );
        }
    }

    #[test]
    fn quiet_hours_hold_until_their_local_end_across_midnight_and_daylight_saving() {
        use super::QuietHours;
        use chrono::{TimeZone, Utc};
        let night = QuietHours::parse("22:00-06:00", Some("Europe/Berlin"), 3).unwrap();
        // 23:30 in Berlin in winter (UTC+1) → held until 06:00 Berlin = 05:00 UTC.
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 22, 30, 0).unwrap();
        assert_eq!(
            night.held_until(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 7, 5, 0, 0).unwrap())
        );
        // 03:00 Berlin → the same morning's end.
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap();
        assert_eq!(
            night.held_until(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 7, 5, 0, 0).unwrap())
        );
        // Midday: not quiet.
        assert_eq!(
            night.held_until(Utc.with_ymd_and_hms(2026, 12, 7, 11, 0, 0).unwrap()),
            None
        );
        // Summer time (UTC+2): 06:00 Berlin = 04:00 UTC.
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 23, 0, 0).unwrap();
        assert_eq!(
            night.held_until(at),
            Some(Utc.with_ymd_and_hms(2026, 7, 2, 4, 0, 0).unwrap())
        );
        // A window ending inside the spring-forward gap (02:30 does not exist on
        // 29 March 2026 in Berlin) ends an hour later on the wall clock.
        let gap = QuietHours::parse("01:00-02:30", Some("Europe/Berlin"), 3).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        assert_eq!(
            gap.held_until(at),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap())
        );
        // A same-day window, in UTC by default.
        let lunch = QuietHours::parse("12:00-13:00", None, 3).unwrap();
        assert!(lunch
            .held_until(Utc.with_ymd_and_hms(2026, 1, 1, 12, 59, 0).unwrap())
            .is_some());
        assert!(lunch
            .held_until(Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap())
            .is_none());
        for bad in ["22:00", "25:00-06:00", "06:00-06:00"] {
            assert!(QuietHours::parse(bad, None, 3).is_err(), "{bad}");
        }
        assert!(QuietHours::parse("22:00-06:00", Some("Mars/Olympus"), 3).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = r#"
version = 1
[[notifications.channels]]
id = "hook"
kind = "webhook"
url = "https://hooks.example.net/T000/B000/XXXXSECRETPATH"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[notifications.channels]]
id = "pd"
kind = "pagerduty"
routing_key = "R0UT1NGK3Y"
"#;
        let config = HubConfig::from_toml(text, "hub.toml", Path::new("/")).unwrap();
        let shown = format!("{config:?}");
        for secret in ["MfKQ9r8", "XXXXSECRETPATH", "R0UT1NGK3Y"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert_eq!(
            config.notifications.channels[1].endpoint(),
            Some(super::PAGERDUTY_EVENTS_URL)
        );
    }
}
