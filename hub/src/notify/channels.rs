//! Each channel kind's wire format, rendered from the stored message document, and
//! one delivery attempt with its outcome classified: what is retried (network errors,
//! 408, 429, 5xx, transient SMTP replies, honouring `Retry-After`), what fails for good
//! (other 4xx, permanent SMTP replies), and what turns a channel off (410 Gone).

use super::config::{ChannelConfig, ChannelKind, SmtpConfig, SmtpTls};
use super::signature::WebhookSecret;
use crate::store::ClaimedNotification;
use serde_json::{json, Value};
use std::time::Duration;

/// How one attempt ended, before backoff is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Taken, with the receiver's answer.
    Delivered(i32),
    /// Worth another try; `retry_after` when the receiver said when.
    Transient {
        /// HTTP status or SMTP code, if the receiver answered.
        status: Option<i32>,
        /// What went wrong.
        error: String,
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Never worth another try.
    Permanent {
        /// The answer.
        status: Option<i32>,
        /// Why.
        error: String,
    },
    /// The endpoint is gone for good (410): the channel is turned off.
    Gone(String),
}

/// An HTTP request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Where.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

fn text(message: &Value, pointer: &str) -> String {
    match message.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// The line a person reads first, with the dashboard link when there is one.
fn summary_with_link(message: &Value) -> String {
    let summary = text(message, "/summary");
    match message.pointer("/links/alert").and_then(Value::as_str) {
        Some(link) => format!("{summary} <{link}>"),
        None => summary,
    }
}

/// A digest's lines (each message's summary), and how many more it stands for.
fn digest_lines(message: &Value) -> Option<(Vec<String>, u64)> {
    let lines = message.get("lines")?.as_array()?;
    let more = message.get("more").and_then(Value::as_u64).unwrap_or(0);
    Some((
        lines
            .iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect(),
        more,
    ))
}

/// A digest's lines as text, one per line, with the count of the rest.
fn digest_text(message: &Value) -> String {
    let Some((lines, more)) = digest_lines(message) else {
        return String::new();
    };
    let mut text: String = lines.iter().map(|l| format!("• {l}\n")).collect();
    if more > 0 {
        text.push_str(&format!("… and {more} more\n"));
    }
    text
}

/// The facts shown as a table in Slack, Teams and e-mail (none for a digest).
fn facts(message: &Value) -> Vec<(&'static str, String)> {
    if digest_lines(message).is_some() {
        return Vec::new();
    }
    let mut facts = vec![
        ("Severity", text(message, "/severity")),
        (
            "Max temperature",
            format!("{} °C", text(message, "/alert/worst_max_c")),
        ),
        (
            "Site / gateway",
            format!(
                "{}/{}",
                text(message, "/alert/site"),
                text(message, "/alert/gateway")
            ),
        ),
        ("Camera", text(message, "/alert/camera")),
        ("Status", text(message, "/alert/status")),
        ("Findings", text(message, "/alert/finding_count")),
        ("Rule", text(message, "/rule")),
        ("Alert", text(message, "/alert/id")),
    ];
    if let Some(asset) = message.pointer("/alert/asset").and_then(Value::as_str) {
        facts.insert(3, ("Asset", asset.to_string()));
    }
    // A fleet alarm has no temperature and no findings: what the hub saw instead, and
    // once it ended, how long it lasted.
    if message
        .pointer("/alert/worst_max_c")
        .is_some_and(Value::is_null)
    {
        facts.retain(|(name, _)| !matches!(*name, "Max temperature" | "Findings"));
        facts.retain(|(name, value)| !(*name == "Camera" && value.is_empty()));
        facts.insert(1, ("What the hub saw", text(message, "/alert/detail")));
        if let Some(s) = message.pointer("/alert/duration_s").and_then(Value::as_i64) {
            let lasted = crate::alarms::duration_words(chrono::Duration::seconds(s));
            facts.insert(2, ("Lasted", lasted));
        }
    }
    facts
}

/// PagerDuty's severity of a message: level 4 and above critical, 3 error, 2 and cool
/// exceptions warning, the rest info.
fn pagerduty_severity(message: &Value) -> &'static str {
    if text(message, "/alert/kind") == "cool_exception" {
        return "warning";
    }
    match message.pointer("/transition/level").and_then(Value::as_u64) {
        Some(4..) => "critical",
        Some(3) => "error",
        Some(2) => "warning",
        _ => "info",
    }
}

/// The request a webhook, Slack, Teams or PagerDuty channel makes for `n`, signed (for
/// webhooks) at `now` (Unix seconds).
pub fn render_http(channel: &ChannelConfig, n: &ClaimedNotification, now: i64) -> HttpRequest {
    let m = &n.message;
    let url = channel.endpoint().unwrap_or_default().to_string();
    let (body, headers) = match channel.kind {
        ChannelKind::Webhook => {
            let body = json!({
                "type": text(m, "/event"),
                "timestamp": m.pointer("/transition/at"),
                "data": m,
            })
            .to_string();
            let id = n.id.to_string();
            let mut headers = vec![
                ("webhook-id".to_string(), id.clone()),
                ("webhook-timestamp".to_string(), now.to_string()),
            ];
            // Validated at start; a secret that no longer parses sends unsigned and the
            // receiver refuses it, which shows in the delivery log.
            if let Some(secret) = channel
                .secret
                .as_deref()
                .and_then(|s| WebhookSecret::parse(s).ok())
            {
                headers.push((
                    "webhook-signature".to_string(),
                    secret.sign(&id, now, body.as_bytes()),
                ));
            }
            (body, headers)
        }
        ChannelKind::Slack => {
            let fields: Vec<Value> = facts(m)
                .into_iter()
                .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
                .take(10)
                .collect();
            let mut blocks = vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": summary_with_link(m)}}),
            ];
            if !fields.is_empty() {
                blocks.push(json!({"type": "section", "fields": fields}));
            }
            let digest = digest_text(m);
            if !digest.is_empty() {
                let mut text = digest;
                // A section's text is at most 3000 characters.
                if text.len() > 2900 {
                    let cut = (0..=2900)
                        .rev()
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(0);
                    text.truncate(cut);
                    text.push('…');
                }
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
            }
            let body = json!({
                "text": summary_with_link(m),
                "blocks": blocks,
            });
            (body.to_string(), Vec::new())
        }
        ChannelKind::Teams => {
            let facts: Vec<Value> = facts(m)
                .into_iter()
                .map(|(k, v)| json!({"title": k, "value": v}))
                .collect();
            let mut card = json!({
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": text(m, "/summary"), "weight": "Bolder", "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            });
            let digest = digest_text(m);
            if !digest.is_empty() {
                if let Some(body) = card["body"].as_array_mut() {
                    body.push(json!({"type": "TextBlock", "text": digest, "wrap": true}));
                }
            }
            if let Some(link) = m.pointer("/links/alert").and_then(Value::as_str) {
                card["actions"] =
                    json!([{"type": "Action.OpenUrl", "title": "Open in Chitti", "url": link}]);
            }
            let body = json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": card,
                }],
            });
            (body.to_string(), Vec::new())
        }
        ChannelKind::Pagerduty => {
            let action = match text(m, "/transition/kind").as_str() {
                "acknowledged" => "acknowledge",
                "resolved" => "resolve",
                _ => "trigger",
            };
            let mut event = json!({
                "routing_key": channel.routing_key.as_deref().unwrap_or_default(),
                "event_action": action,
                // The alert's id: trigger, acknowledge and resolve all reach one incident.
                "dedup_key": text(m, "/alert/id"),
            });
            if action == "trigger" {
                let mut summary = text(m, "/summary");
                summary.truncate(1024);
                event["payload"] = json!({
                    "summary": summary,
                    "source": format!("{}/{}", text(m, "/alert/site"), text(m, "/alert/gateway")),
                    "severity": pagerduty_severity(m),
                    "timestamp": m.pointer("/transition/at"),
                    "component": m.pointer("/alert/asset").cloned().unwrap_or(Value::Null),
                    "group": text(m, "/alert/site"),
                    "class": text(m, "/alert/kind"),
                    "custom_details": m.get("alert"),
                });
                if let Some(link) = m.pointer("/links/alert").and_then(Value::as_str) {
                    event["links"] = json!([{"href": link, "text": "Alert in Chitti"}]);
                }
            }
            (event.to_string(), Vec::new())
        }
        ChannelKind::Email => (String::new(), Vec::new()),
    };
    HttpRequest {
        url,
        headers,
        body: body.into_bytes(),
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// What an HTTP answer means for the message.
pub fn classify_http(status: u16, retry_after_header: Option<&str>, body: &str) -> Attempt {
    let s = i32::from(status);
    let said = body.chars().take(200).collect::<String>();
    match status {
        200..=299 => Attempt::Delivered(s),
        410 => Attempt::Gone(format!("HTTP 410 Gone: {said}")),
        408 | 429 | 500..=599 => Attempt::Transient {
            status: Some(s),
            error: format!("HTTP {status}: {said}"),
            retry_after: retry_after_header.and_then(retry_after),
        },
        _ => Attempt::Permanent {
            status: Some(s),
            error: format!("HTTP {status}: {said}"),
        },
    }
}

/// The HTTP client every webhook, Slack, Teams and PagerDuty request goes through:
/// made once (its TLS configuration and connection pool are reused), each exchange
/// bounded by `timeout`, every status an answer rather than an error.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("chitti-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Makes one HTTP request through `agent` (blocking: run it on the blocking pool).
pub fn send_http(agent: &ureq::Agent, request: &HttpRequest) -> Attempt {
    let mut call = agent
        .post(&request.url)
        .header("content-type", "application/json");
    for (name, value) in &request.headers {
        call = call.header(name, value);
    }
    match call.send(&request.body[..]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            classify_http(status, retry_after.as_deref(), &body)
        }
        Err(e) => Attempt::Transient {
            status: None,
            error: format!(
                "cannot reach {}: {e}",
                super::config::redact_url(&request.url)
            ),
            retry_after: None,
        },
    }
}

/// The e-mail of a message: plain text and HTML alternatives, its Message-ID the
/// notification's id (the same on every retry).
pub fn render_email(
    smtp: &SmtpConfig,
    channel: &ChannelConfig,
    n: &ClaimedNotification,
) -> Result<lettre::Message, String> {
    use lettre::message::{header::ContentType, MultiPart, SinglePart};
    let m = &n.message;
    let mut plain = format!("{}\n\n{}", text(m, "/summary"), digest_text(m));
    let mut rows = String::new();
    for (k, v) in facts(m) {
        plain.push_str(&format!("{k}: {v}\n"));
        rows.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(&v)
        ));
    }
    let mut links = String::new();
    if let Some(alert) = m.pointer("/links/alert").and_then(Value::as_str) {
        let thermogram = text(m, "/links/thermogram");
        plain.push_str(&format!("\nAlert: {alert}\nThermogram: {thermogram}\n"));
        links = format!(
            "<p><a href=\"{}\">Open the alert</a> · <a href=\"{}\">thermogram</a></p>",
            escape_html(alert),
            escape_html(&thermogram)
        );
    }
    let digest = digest_text(m);
    let html = format!(
        "<p><strong>{}</strong></p><table>{rows}</table>{}{links}",
        escape_html(&text(m, "/summary")),
        if digest.is_empty() {
            String::new()
        } else {
            format!("<pre>{}</pre>", escape_html(&digest))
        }
    );
    let mut builder = lettre::Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("smtp.from: {e}"))?)
        .subject(format!("[Chitti] {}", text(m, "/summary")))
        .message_id(Some(format!("<{}@chitti-hub>", n.id)));
    for to in &channel.to {
        builder = builder.to(to.parse().map_err(|e| format!("to {to:?}: {e}"))?);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(plain),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| format!("cannot build the e-mail: {e}"))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SMTP transport of the relay (its password read from its file).
pub fn smtp_transport(
    smtp: &SmtpConfig,
    timeout: Duration,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, Tokio1Executor};
    let mut tls_parameters = TlsParameters::builder(smtp.host.clone());
    if let Some(ca) = &smtp.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        // The broker's PEM reader: a file without a certificate is an error, not an
        // empty trust list.
        let what = ca.display().to_string();
        for der in crate::broker::tls::certs(&pem, &what).map_err(|e| e.to_string())? {
            let cert = Certificate::from_der(der.to_vec()).map_err(|e| format!("{what}: {e}"))?;
            tls_parameters = tls_parameters.add_root_certificate(cert);
        }
    }
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters.build().map_err(|e| e.to_string())?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters.build().map_err(|e| e.to_string())?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port())
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        builder = builder.credentials(Credentials::new(user.clone(), password.trim().to_string()));
    }
    Ok(builder.build())
}

/// Sends one e-mail, within `timeout` for the whole exchange.
pub async fn send_email(
    transport: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    email: lettre::Message,
    timeout: Duration,
) -> Attempt {
    use lettre::AsyncTransport;
    let Ok(sent) = tokio::time::timeout(timeout, transport.send(email)).await else {
        return Attempt::Transient {
            status: None,
            error: format!("SMTP: no answer within {} s", timeout.as_secs()),
            retry_after: None,
        };
    };
    match sent {
        Ok(response) => Attempt::Delivered(i32::from(u16::from(response.code()))),
        Err(e) if e.is_permanent() => Attempt::Permanent {
            status: e.status().map(|c| i32::from(u16::from(c))),
            error: format!("SMTP: {e}"),
        },
        Err(e) => Attempt::Transient {
            status: e.status().map(|c| i32::from(u16::from(c))),
            error: format!("SMTP: {e}"),
            retry_after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_smtp_files_are_named_not_panicked_on() {
        let smtp = SmtpConfig {
            host: "smtp.example.net".into(),
            port: None,
            from: "Chitti <chitti@example.net>".into(),
            tls: SmtpTls::Starttls,
            username: Some("chitti".into()),
            password_file: Some("/nonexistent/smtp-password".into()),
            ca_file: None,
        };
        let Err(e) = smtp_transport(&smtp, Duration::from_secs(1)) else {
            panic!("a missing password file was accepted")
        };
        assert!(e.contains("/nonexistent/smtp-password"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let smtp = SmtpConfig {
            username: None,
            password_file: None,
            ca_file: Some(ca.clone()),
            ..smtp
        };
        let Err(e) = smtp_transport(&smtp, Duration::from_secs(1)) else {
            panic!("a CA file without a certificate was accepted")
        };
        assert!(e.contains(&ca.display().to_string()), "{e}");
    }

    #[test]
    fn a_fleet_alarm_reads_what_the_hub_saw_not_a_temperature() {
        let message = serde_json::json!({
            "severity": "L3 fleet alarm",
            "rule": "fleet",
            "alert": {"id": "a1", "kind": "gateway_offline", "site": "north-yard",
                      "gateway": "gw-07", "camera": "", "status": "resolved",
                      "worst_max_c": null, "finding_count": 0,
                      "detail": "nothing heard since 2026-12-07 01:00:00 UTC", "duration_s": 253},
        });
        let facts = facts(&message);
        let names: Vec<&str> = facts.iter().map(|(n, _)| *n).collect();
        assert!(
            !names.contains(&"Max temperature") && !names.contains(&"Findings"),
            "{names:?}"
        );
        assert!(
            !names.contains(&"Camera"),
            "a gateway-wide alarm names no camera"
        );
        assert!(facts.contains(&(
            "What the hub saw",
            "nothing heard since 2026-12-07 01:00:00 UTC".into()
        )));
        assert!(
            facts.contains(&("Lasted", "4 min 13 s".into())),
            "{facts:?}"
        );
        let hot = serde_json::json!({"alert": {"worst_max_c": 87.5, "camera": "cam-1"}});
        assert!(super::facts(&hot).contains(&("Max temperature", "87.5 °C".into())));
    }

    #[test]
    fn answers_are_classified_as_the_receivers_mean_them() {
        assert_eq!(classify_http(202, None, ""), Attempt::Delivered(202));
        assert!(matches!(classify_http(410, None, "gone"), Attempt::Gone(_)));
        for retried in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify_http(retried, None, ""), Attempt::Transient { .. }),
                "{retried}"
            );
        }
        for refused in [400, 401, 403, 404, 413, 422] {
            assert!(
                matches!(classify_http(refused, None, ""), Attempt::Permanent { .. }),
                "{refused}"
            );
        }
        let Attempt::Transient { retry_after, .. } = classify_http(429, Some("7"), "") else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let Attempt::Transient { retry_after, .. } = classify_http(503, Some(&later), "") else {
            panic!()
        };
        let wait = retry_after.unwrap().as_secs();
        assert!((100..=120).contains(&wait), "{wait}");
    }
}
