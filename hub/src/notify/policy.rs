//! The rules, applied: which channels hear of a transition, which escalations it
//! starts, what each escalation step sends, and the message document every channel
//! renders from (so a retry says exactly what the first attempt said).

use super::config::{NotificationsConfig, RuleConfig};
use crate::store::{
    AlertRecord, AlertTransition, EscalationStep, GatewaySent, KindFilter, NotificationPolicy,
    PlannedEscalation, PlannedNotification, RoutePlan, TransitionKind,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};

/// The configured rules and channels.
#[derive(Debug, Clone)]
pub struct Policy {
    config: NotificationsConfig,
    dashboard_url: Option<String>,
}

impl Policy {
    /// The policy of a validated configuration; links point under `dashboard_url`.
    pub fn new(config: NotificationsConfig, dashboard_url: Option<String>) -> Self {
        let dashboard_url = dashboard_url.map(|u| u.trim_end_matches('/').to_string());
        Self {
            config,
            dashboard_url,
        }
    }

    /// The configuration this policy applies.
    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// One message standing for several that waited for a rate-limited channel: a
    /// headline with counts by severity and site, and each message's own summary
    /// (the first 50; the rest counted).
    pub fn digest(
        &self,
        messages: &[&serde_json::Value],
        at: chrono::DateTime<chrono::Utc>,
    ) -> serde_json::Value {
        const LINES: usize = 50;
        let text = |m: &serde_json::Value, p: &str| {
            m.pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let mut by_severity: std::collections::BTreeMap<(u64, String), usize> = Default::default();
        let mut sites = std::collections::BTreeSet::new();
        for m in messages {
            let level = m
                .pointer("/transition/level")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            *by_severity
                .entry((level, text(m, "/severity")))
                .or_default() += 1;
            sites.insert(text(m, "/alert/site"));
        }
        let counts: Vec<String> = by_severity
            .iter()
            .rev()
            .map(|((_, name), n)| format!("{n} × {name}"))
            .collect();
        let worst = by_severity.keys().next_back().map(|(l, _)| *l).unwrap_or(0);
        let sites: Vec<String> = sites.into_iter().collect();
        json!({
            "event": "digest",
            "summary": format!(
                "{} alert changes ({}) at {}",
                messages.len(),
                counts.join(", "),
                sites.join(", ")
            ),
            "severity": by_severity.keys().next_back().map(|(_, n)| n.clone()).unwrap_or_default(),
            "rule": "digest",
            "transition": {"kind": "digest", "level": worst, "step": 0, "actor": "chitti-hub", "at": at},
            "lines": messages.iter().take(LINES).map(|m| text(m, "/summary")).collect::<Vec<_>>(),
            "more": messages.len().saturating_sub(LINES),
            "links": self.dashboard_url.as_ref().map(|base| json!({"alert": format!("{base}/alerts")})),
        })
    }

    /// Whether `rule` takes `alert` at `level` (the level of the transition: routing
    /// may run after later findings raised the alert further). A cool exception
    /// (level 0, far colder than its sibling phases) is taken only by rules that name
    /// the kind or start at level 0.
    fn matches(rule: &RuleConfig, alert: &AlertRecord, level: u8) -> bool {
        let kind = alert.presented_kind();
        let kind_ok = if rule.kinds.is_empty() {
            kind == "hotspot" || (kind == "cool_exception" && rule.min_level == 0)
        } else {
            rule.kinds
                .iter()
                .filter_map(|k| KindFilter::parse(k))
                .any(|k| k.matches(alert))
        };
        let level_ok = kind == "cool_exception" || level >= rule.min_level;
        let site_ok = rule.sites.is_empty() || rule.sites.contains(&alert.site);
        let gateway = format!("{}/{}", alert.site, alert.gateway);
        let gateway_ok = rule.gateways.is_empty() || rule.gateways.contains(&gateway);
        let class_ok = rule.component_classes.is_empty()
            || alert
                .component_class
                .as_ref()
                .is_some_and(|c| rule.component_classes.contains(c));
        kind_ok && level_ok && site_ok && gateway_ok && class_ok
    }

    /// A message for `channel`; held to the end of the channel's quiet hours when the
    /// transition's level is below their bypass level (a cool exception counts as 0).
    fn planned(
        &self,
        channel: &str,
        rule: &RuleConfig,
        message: &serde_json::Value,
        disabled: &HashSet<String>,
        t: &AlertTransition,
    ) -> PlannedNotification {
        let quiet = self
            .config
            .channels
            .iter()
            .find(|c| c.id == channel)
            .and_then(|c| c.quiet());
        PlannedNotification {
            channel: channel.to_string(),
            rule: rule.id.clone(),
            message: message.clone(),
            refused: disabled
                .contains(channel)
                .then(|| format!("channel {channel} is disabled")),
            not_before: quiet
                .filter(|q| t.level < q.bypass_level)
                .and_then(|q| q.held_until(t.at)),
        }
    }

    /// The document every channel renders: the alert as it is, what happened, and a
    /// one-line summary.
    pub fn message(
        &self,
        t: &AlertTransition,
        alert: &AlertRecord,
        rule: &str,
    ) -> serde_json::Value {
        let kind = alert.presented_kind();
        let severity = match (kind, alert.severity_table.as_deref()) {
            ("cool_exception", _) => crate::dashboard::layout::COOL_EXCEPTION_NAME.to_string(),
            // The level of the transition: a level_up routed after later findings
            // still says which level it announces.
            (_, Some(table)) => format!(
                "L{} {}",
                t.level,
                crate::dashboard::layout::level_name(table, t.level)
            ),
            (_, None) => format!("L{} fleet alarm", t.level),
        };
        let what = match t.kind {
            TransitionKind::Raised => "raised".to_string(),
            TransitionKind::LevelUp => "worse".to_string(),
            TransitionKind::Acknowledged => format!("acknowledged by {}", t.actor),
            TransitionKind::Resolved => format!("resolved by {}", t.actor),
            TransitionKind::Reopened => format!("reopened by {}", t.actor),
            TransitionKind::Escalated if t.step <= 1 => "not acknowledged: escalated".into(),
            TransitionKind::Escalated => {
                format!("still not acknowledged (reminder {})", t.step - 1)
            }
        };
        let camera = if alert.camera.is_empty() {
            String::new()
        } else {
            format!(" {}", alert.camera)
        };
        let place = match alert.asset.as_deref().or(alert.component_class.as_deref()) {
            Some(asset) => format!("{asset} at {}/{}{camera}", alert.site, alert.gateway),
            None => format!("{}/{}{camera}", alert.site, alert.gateway),
        };
        let summary = match (alert.worst_max_c, alert.outage(t.at)) {
            (Some(max_c), _) => format!(
                "{severity} {} {max_c:.1} °C, {place}: {what}",
                kind.replace('_', " ")
            ),
            // A fleet alarm: what the hub saw, and once ended how long it lasted.
            (None, Some(lasted)) if alert.cleared_at.is_some() => format!(
                "{severity} {}, {place}: {what} (lasted {})",
                alert.kind.title(),
                crate::alarms::duration_words(lasted)
            ),
            (None, _) => format!(
                "{severity} {}, {place}: {what}: {}",
                alert.kind.title(),
                alert.detail.as_deref().unwrap_or("")
            ),
        };
        json!({
            "event": format!("alert.{}", t.kind.as_str()),
            "summary": summary,
            "severity": severity,
            "rule": rule,
            "transition": {
                "kind": t.kind.as_str(),
                "level": t.level,
                "step": t.step,
                "actor": t.actor,
                "at": t.at,
            },
            "alert": {
                "id": alert.id,
                "kind": kind,
                "site": alert.site,
                "gateway": alert.gateway,
                "camera": alert.camera,
                "asset": alert.asset,
                "component_class": alert.component_class,
                "status": alert.status.as_str(),
                "severity_table": alert.severity_table,
                "worst_level": alert.worst_level,
                "worst_max_c": alert.worst_max_c,
                "last_level": alert.last_level,
                "last_max_c": alert.last_max_c,
                "cool_exception": alert.cool_exception,
                "finding_count": alert.finding_count,
                "first_finding_at": alert.first_finding_at,
                "last_finding_at": alert.last_finding_at,
                "last_finding_id": alert.last_finding_id,
                "created_at": alert.created_at,
                "detail": alert.detail,
                "cleared_at": alert.cleared_at,
                "duration_s": alert.cleared_at.and(alert.outage(t.at)).map(|d| d.num_seconds()),
            },
            "links": self.dashboard_url.as_ref().map(|base| {
                let mut links = json!({"alert": format!("{base}/alerts/{}", alert.id)});
                if let Some(finding) = alert.last_finding_id {
                    links["thermogram"] =
                        json!(format!("{base}/api/v1/findings/{finding}/thermogram.png"));
                }
                links
            }),
        })
    }
}

impl NotificationPolicy for Policy {
    fn wants_gateway_history(&self) -> bool {
        self.config
            .rules
            .iter()
            .any(|r| r.gateway_cooldown_s.is_some())
    }

    fn route(
        &self,
        t: &AlertTransition,
        alert: &AlertRecord,
        notified: &HashMap<String, Option<chrono::DateTime<chrono::Utc>>>,
        disabled: &HashSet<String>,
        gateway_sent: &[GatewaySent],
    ) -> RoutePlan {
        let mut plan = RoutePlan::default();
        let mut chosen = HashSet::new();
        for rule in self
            .config
            .rules
            .iter()
            .filter(|r| Self::matches(r, alert, t.level))
        {
            let message = self.message(t, alert, &rule.id);
            let channels: Vec<&String> = match t.kind {
                TransitionKind::Raised | TransitionKind::LevelUp | TransitionKind::Reopened => {
                    rule.channels.iter().collect()
                }
                // Acting closes the loop wherever the alert was announced or escalated
                // (PagerDuty's incident is acknowledged, the on-call manager told).
                TransitionKind::Acknowledged | TransitionKind::Resolved => rule
                    .channels
                    .iter()
                    .chain(&rule.escalate_to)
                    .filter(|c| notified.contains_key(*c))
                    .collect(),
                TransitionKind::Escalated => Vec::new(),
            };
            for channel in channels {
                if chosen.insert(channel.clone()) {
                    let mut planned = self.planned(channel, rule, &message, disabled, t);
                    // The rule's cool-down: a level_up soon after this alert's last
                    // delivered message to the channel waits for the cool-down's end.
                    if let (TransitionKind::LevelUp, Some(cooldown), Some(Some(last))) =
                        (t.kind, rule.cooldown_s, notified.get(channel.as_str()))
                    {
                        let until = *last + chrono::Duration::seconds(cooldown as i64);
                        if until > t.at {
                            planned.not_before = planned.not_before.max(Some(until));
                        }
                    }
                    // The gateway's cool-down (a flapping gateway): a new alert or level
                    // no worse than what the channel was told of this gateway within
                    // the cool-down waits for its end, and goes out with the others
                    // that waited (a digest where the channel digests). Worse goes now.
                    if let (TransitionKind::Raised | TransitionKind::LevelUp, Some(cooldown)) =
                        (t.kind, rule.gateway_cooldown_s)
                    {
                        let window = chrono::Duration::seconds(cooldown as i64);
                        let recent = gateway_sent
                            .iter()
                            .filter(|m| m.channel == *channel && (t.at - m.at) < window);
                        let (last, worst) = recent.fold((None, 0), |(last, worst), m| {
                            (last.max(Some(m.at)), worst.max(m.level))
                        });
                        if let Some(last) = last.filter(|_| t.level <= worst) {
                            planned.not_before = planned.not_before.max(Some(last + window));
                        }
                    }
                    plan.notifications.push(planned);
                }
            }
            let starts = matches!(
                t.kind,
                TransitionKind::Raised | TransitionKind::LevelUp | TransitionKind::Reopened
            );
            if let (true, Some(after)) = (starts, rule.escalate_after_s) {
                plan.escalations.push(PlannedEscalation {
                    rule: rule.id.clone(),
                    due_at: t.at + chrono::Duration::seconds(after as i64),
                });
            }
        }
        plan
    }

    fn escalate(
        &self,
        rule_id: &str,
        t: &AlertTransition,
        alert: &AlertRecord,
        disabled: &HashSet<String>,
    ) -> EscalationStep {
        let Some(rule) = self.config.rules.iter().find(|r| r.id == rule_id) else {
            return EscalationStep::Stop(format!("rule {rule_id} is no longer configured"));
        };
        if !Self::matches(rule, alert, alert.worst_level) || rule.escalate_to.is_empty() {
            return EscalationStep::Stop(format!("rule {rule_id} no longer escalates this alert"));
        }
        let message = self.message(t, alert, &rule.id);
        let notifications = rule
            .escalate_to
            .iter()
            .map(|c| self.planned(c, rule, &message, disabled, t))
            .collect();
        let next_due = match rule.repeat_every_s {
            Some(every) if t.step <= rule.repeats() => {
                Some(t.at + chrono::Duration::seconds(every as i64))
            }
            _ => None,
        };
        EscalationStep::Send {
            notifications,
            next_due,
        }
    }
}
