//! Notifications (issue #18, being built): so far the Standard Webhooks signer that
//! generic webhook channels will sign with. The outbox, channels and rules follow.

pub mod signature;
