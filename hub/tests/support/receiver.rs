//! The shared HTTP receiver ([`chitti_test_support::HttpReceiver`]) checking webhooks
//! with the hub's own Standard Webhooks verifier (itself checked against the
//! specification's published vector in `notify/signature.rs`).

use chitti_hub::notify::signature::WebhookSecret;
pub use chitti_test_support::HttpReceiver as Receiver;
use std::sync::Arc;

/// The webhook secret the receiver checks signatures with.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver whose `/webhook` requests must carry a valid, fresh signature.
pub async fn start() -> Receiver {
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).unwrap();
    Receiver::start(
        "webhook",
        Arc::new(move |headers, body| {
            let now = chrono::Utc::now().timestamp();
            secret
                .verify_request(|name| headers.get(name).cloned(), body, now)
                .is_ok()
        }),
    )
    .await
}
