//! Signed finding batches: how the hub knows a batch really comes from the gateway
//! whose topic it arrived on, whatever broker carried it.
//!
//! Brokers cannot be trusted to scope topics (rumqttd has no per-topic permissions;
//! Mosquitto and EMQX ACLs exist only where someone configured them), so every
//! `/findings` payload is a [`SignedBatch`]: the batch's exact JSON bytes, the gateway's
//! Ed25519 public key, and a signature over
//!
//! ```text
//! "chitti/v1/findings-batch" 0x00 <topic> 0x00 <batch JSON bytes>
//! ```
//!
//! The topic is inside the signed message, so a batch signed for one gateway's topic
//! cannot be replayed on another's; the hub also checks that every finding in it names
//! the topic's site and gateway. The batch is carried as raw JSON (not re-serialised)
//! so verification never depends on how a number or a date prints.
//!
//! # Evidence uploads
//!
//! `PUT /api/v1/evidence/{sha256}` is authenticated with the same key, cheaply (one
//! Ed25519 verification, no password hash): the request carries
//! [`GATEWAY_HEADER`] `{site}/{gateway}` and [`SIGNATURE_HEADER`] (lowercase hex), a
//! signature over
//!
//! ```text
//! "chitti/v1/evidence" 0x00 <site> 0x00 <gateway> 0x00 <sha256 hex>
//! ```
//!
//! ([`evidence_message`]). The body is bound by its hash, which the hub checks against
//! the path. There is no nonce or timestamp on purpose: blobs are content-addressed and
//! the PUT is idempotent, so a replayed signature can only upload the very same bytes
//! again under the same name.
//!
//! # Acknowledgements
//!
//! An `/ack` makes the agent delete findings from its outbox, so a forged one destroys
//! data whenever the hub has not stored it. Every ack is a [`SignedAck`] by the **hub's**
//! key, which the agent knows from its configuration (`mqtt.hub_public_keys`), over
//!
//! ```text
//! "chitti/v1/ack" 0x00 <topic> 0x00 <ack JSON bytes>
//! ```
//!
//! The topic names the gateway, so an ack for one gateway is worthless on another's;
//! the [`Ack`] names the batch it answers, and the agent deletes only ids of a batch it
//! sent and has not yet seen answered, so a recorded ack replayed later deletes nothing.
//!
//! # Status and telemetry
//!
//! What the hub believes about a gateway's health (online, cameras, detector, outbox,
//! temperatures) comes only from that gateway: `/status` (the Last Will included) and
//! `/telemetry` are [`SignedReport`]s by the gateway's key, over
//!
//! ```text
//! "chitti/v1/status" | "chitti/v1/telemetry" 0x00 <topic> 0x00 <report JSON bytes>
//! ```
//!
//! Against replay the hub keeps, per gateway, the newest status `ts` it applied and
//! the agent `session` (process start) it came from: a status is applied only when it
//! is newer, except the Last Will (offline, signed at start with `ts = session`),
//! which is applied when its session is the current one or newer. A recorded "online"
//! replayed after a gateway died is therefore refused; a replayed Will of the running
//! session marks a live gateway offline only until its next status. Telemetry is
//! applied only when newer than the gateway's newest sample.

use crate::model_manifest::ModelManifest;
use crate::protocol::{Ack, DesiredConfig, DesiredModel, FindingBatch, Topic};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Version of the signed envelope.
pub const SIGNED_BATCH_VERSION: u32 = 1;

/// Domain separation: a signature over a batch is never valid for anything else.
const CONTEXT: &[u8] = b"chitti/v1/findings-batch";

/// The `/findings` payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBatch<'a> {
    /// Envelope version ([`SIGNED_BATCH_VERSION`]).
    pub v: u32,
    /// The signer's Ed25519 public key, lowercase hex.
    pub key: String,
    /// The Ed25519 signature, lowercase hex.
    pub sig: String,
    /// The [`FindingBatch`] exactly as signed.
    #[serde(borrow)]
    pub batch: &'a RawValue,
}

/// Why a `/findings` payload was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not JSON, or not a signed batch.
    #[error("not a signed finding batch: {0}")]
    Envelope(String),
    /// An envelope version this hub does not read.
    #[error("signed batch version {0} is not supported (expected {SIGNED_BATCH_VERSION})")]
    Version(u32),
    /// The key is not one registered for the topic's gateway (or it is revoked).
    #[error("key {key} is not registered for gateway {site}/{gateway}")]
    UnknownKey {
        /// The key named in the envelope.
        key: String,
        /// Site of the topic.
        site: String,
        /// Gateway of the topic.
        gateway: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify for {0}")]
    BadSignature(String),
    /// The signed bytes are not a valid batch.
    #[error("invalid finding batch: {0}")]
    Batch(String),
    /// A finding names another site or gateway than the topic.
    #[error("finding {id} claims {claimed} but arrived on {topic}")]
    WrongIdentity {
        /// The finding.
        id: String,
        /// `site/gateway` it names.
        claimed: String,
        /// The topic it came on.
        topic: String,
    },
}

/// Domain separation for evidence upload signatures.
const EVIDENCE_CONTEXT: &[u8] = b"chitti/v1/evidence";

/// The header naming the uploading gateway, `{site}/{gateway}`.
pub const GATEWAY_HEADER: &str = "x-chitti-gateway";

/// The header carrying the hex Ed25519 signature of [`evidence_message`].
pub const SIGNATURE_HEADER: &str = "x-chitti-signature";

/// An evidence upload signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceSignatureError {
    /// Not 128 hex characters.
    #[error("an evidence signature is 128 hex characters")]
    Malformed,
    /// Well formed, but not made by this key over this message.
    #[error("the evidence signature does not verify for {site}/{gateway}")]
    BadSignature {
        /// Site the upload claims.
        site: String,
        /// Gateway the upload claims.
        gateway: String,
    },
}

/// The bytes a gateway signs to upload evidence `sha256`:
/// `"chitti/v1/evidence" 0 site 0 gateway 0 sha256`.
pub fn evidence_message(site: &str, gateway: &str, sha256: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(EVIDENCE_CONTEXT.len() + site.len() + gateway.len() + 67);
    m.extend_from_slice(EVIDENCE_CONTEXT);
    for part in [site, gateway, sha256] {
        m.push(0);
        m.extend_from_slice(part.as_bytes());
    }
    m
}

/// Signs an evidence upload: the value of [`SIGNATURE_HEADER`] (lowercase hex).
pub fn sign_evidence(site: &str, gateway: &str, sha256: &str, key: &SigningKey) -> String {
    hex::encode(
        key.sign(&evidence_message(site, gateway, sha256))
            .to_bytes(),
    )
}

/// Verifies an evidence upload signature (hex) against a gateway's public key.
pub fn verify_evidence(
    site: &str,
    gateway: &str,
    sha256: &str,
    signature_hex: &str,
    key: &VerifyingKey,
) -> Result<(), EvidenceSignatureError> {
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim(), &mut sig)
        .map_err(|_| EvidenceSignatureError::Malformed)?;
    key.verify_strict(
        &evidence_message(site, gateway, sha256),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| EvidenceSignatureError::BadSignature {
        site: site.to_string(),
        gateway: gateway.to_string(),
    })
}

/// `context 0x00 topic 0x00 body`: what every signed MQTT payload signs.
fn topic_message(context: &[u8], topic: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + topic.len() + body.len() + 2);
    m.extend_from_slice(context);
    m.push(0);
    m.extend_from_slice(topic.as_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

fn message(topic: &str, batch: &[u8]) -> Vec<u8> {
    topic_message(CONTEXT, topic, batch)
}

/// A signing key from its 32-byte seed.
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// The hex form of a public key.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a hex public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes)
        .map_err(|_| "a public key is 64 hex characters".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// The parts of every signed envelope: the signer's public key and the signature (hex)
/// over `context 0 topic 0 json`, and `json` as the raw value the envelope carries.
fn signed_parts<T: Serialize>(
    context: &[u8],
    topic: &str,
    body: &T,
    key: &SigningKey,
) -> Result<(String, String, Box<RawValue>), String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let signature = key.sign(&topic_message(context, topic, json.as_bytes()));
    let raw = RawValue::from_string(json).map_err(|e| e.to_string())?;
    Ok((
        public_key_hex(&key.verifying_key()),
        hex::encode(signature.to_bytes()),
        raw,
    ))
}

/// Serialises and signs a batch for `topic`: the `/findings` payload.
pub fn sign_batch(topic: &str, batch: &FindingBatch, key: &SigningKey) -> Result<Vec<u8>, String> {
    let (key, sig, raw) = signed_parts(CONTEXT, topic, batch, key)?;
    let envelope = SignedBatch {
        v: SIGNED_BATCH_VERSION,
        key,
        sig,
        batch: &raw,
    };
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

/// Verifies a `/findings` payload that arrived on `topic` and returns its batch.
/// `registered` gives the keys registered (and not revoked) for the topic's gateway.
pub fn open_batch(
    topic: &Topic,
    payload: &[u8],
    registered: &[VerifyingKey],
) -> Result<FindingBatch, BatchError> {
    let envelope: SignedBatch<'_> =
        serde_json::from_slice(payload).map_err(|e| BatchError::Envelope(e.to_string()))?;
    if envelope.v != SIGNED_BATCH_VERSION {
        return Err(BatchError::Version(envelope.v));
    }
    let unknown = || BatchError::UnknownKey {
        key: envelope.key.clone(),
        site: topic.site.clone(),
        gateway: topic.gateway.clone(),
    };
    let key = parse_public_key(&envelope.key).map_err(|_| unknown())?;
    if !registered.contains(&key) {
        return Err(unknown());
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&envelope.sig, &mut sig)
        .map_err(|_| BatchError::BadSignature(format!("{}/{}", topic.site, topic.gateway)))?;
    key.verify(
        &message(&topic.to_string(), envelope.batch.get().as_bytes()),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| BatchError::BadSignature(format!("{}/{}", topic.site, topic.gateway)))?;
    let batch: FindingBatch =
        serde_json::from_str(envelope.batch.get()).map_err(|e| BatchError::Batch(e.to_string()))?;
    check_identity(topic, &batch)?;
    Ok(batch)
}

/// Every finding of a batch must name the site and gateway of its topic.
pub fn check_identity(topic: &Topic, batch: &FindingBatch) -> Result<(), BatchError> {
    for f in &batch.findings {
        if f.site != topic.site || f.gateway != topic.gateway {
            return Err(BatchError::WrongIdentity {
                id: f.id.to_string(),
                claimed: format!("{}/{}", f.site, f.gateway),
                topic: topic.to_string(),
            });
        }
    }
    Ok(())
}

/// Version of the signed ack envelope.
pub const SIGNED_ACK_VERSION: u32 = 1;

/// Domain separation for acknowledgements.
const ACK_CONTEXT: &[u8] = b"chitti/v1/ack";

/// The `/ack` payload: an [`Ack`] signed by the hub.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAck<'a> {
    /// Envelope version ([`SIGNED_ACK_VERSION`]).
    pub v: u32,
    /// The hub's Ed25519 public key, lowercase hex.
    pub key: String,
    /// The Ed25519 signature, lowercase hex.
    pub sig: String,
    /// The [`Ack`] exactly as signed.
    #[serde(borrow)]
    pub ack: &'a RawValue,
}

/// Why an `/ack` payload was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Not JSON, or not a signed ack (an unsigned `{ids}` from an old hub included).
    #[error("not a signed acknowledgement: {0}")]
    Envelope(String),
    /// An envelope version this agent does not read.
    #[error("signed ack version {0} is not supported (expected {SIGNED_ACK_VERSION})")]
    Version(u32),
    /// Signed by a key this agent was not told to trust.
    #[error("ack signed by key {0}, which is not one of mqtt.hub_public_keys")]
    UnknownKey(String),
    /// The signature does not verify (forged, altered, or made for another topic).
    #[error("ack signature does not verify for {0}")]
    BadSignature(String),
    /// The signed bytes are not a valid ack.
    #[error("invalid ack: {0}")]
    Ack(String),
}

/// Serialises and signs an ack for `topic` (the gateway's `/ack` topic) with the hub's
/// key: the `/ack` payload.
pub fn sign_ack(topic: &str, ack: &Ack, key: &SigningKey) -> Result<Vec<u8>, String> {
    let (key, sig, raw) = signed_parts(ACK_CONTEXT, topic, ack, key)?;
    let envelope = SignedAck {
        v: SIGNED_ACK_VERSION,
        key,
        sig,
        ack: &raw,
    };
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

/// Verifies an `/ack` payload that arrived on `topic` against the hub keys the agent
/// trusts, and returns the ack.
pub fn open_ack(topic: &str, payload: &[u8], trusted: &[VerifyingKey]) -> Result<Ack, AckError> {
    let envelope: SignedAck<'_> =
        serde_json::from_slice(payload).map_err(|e| AckError::Envelope(e.to_string()))?;
    if envelope.v != SIGNED_ACK_VERSION {
        return Err(AckError::Version(envelope.v));
    }
    let body = envelope.ack.get();
    verify_hub(
        ACK_CONTEXT,
        topic,
        &envelope.key,
        &envelope.sig,
        body,
        trusted,
    )
    .map_err(|unknown| match unknown {
        Some(key) => AckError::UnknownKey(key),
        None => AckError::BadSignature(topic.to_string()),
    })?;
    serde_json::from_str(body).map_err(|e| AckError::Ack(e.to_string()))
}

/// Checks a hub signature over `context 0 topic 0 body` by one of `trusted`;
/// `Err(Some(key))` names a key not trusted, `Err(None)` a signature that does not verify.
fn verify_hub(
    context: &[u8],
    topic: &str,
    key_hex: &str,
    sig_hex: &str,
    body: &str,
    trusted: &[VerifyingKey],
) -> Result<(), Option<String>> {
    let key = parse_public_key(key_hex)
        .ok()
        .filter(|k| trusted.contains(k))
        .ok_or_else(|| Some(key_hex.to_string()))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(sig_hex, &mut sig).map_err(|_| None)?;
    key.verify_strict(
        &topic_message(context, topic, body.as_bytes()),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| None)
}

/// Version of the signed hub-document envelope (`/config/set`, `/model/set`, model
/// manifests).
pub const SIGNED_CONFIG_VERSION: u32 = 1;

/// Domain separation for desired configurations.
const CONFIG_CONTEXT: &[u8] = b"chitti/v1/config-set";
/// Domain separation for desired models.
const MODEL_CONTEXT: &[u8] = b"chitti/v1/model-set";
/// Domain separation for model manifests (signed over an empty topic: a manifest is
/// the same for every gateway).
const MANIFEST_CONTEXT: &[u8] = b"chitti/v1/model-manifest";

/// A document signed by the hub over `<context> 0x00 <topic> 0x00 <document JSON
/// bytes>`: the `/config/set` and `/model/set` payloads, and a signed model manifest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDesiredConfig<'a> {
    /// Envelope version ([`SIGNED_CONFIG_VERSION`]).
    pub v: u32,
    /// The hub's Ed25519 public key, lowercase hex.
    pub key: String,
    /// The Ed25519 signature, lowercase hex.
    pub sig: String,
    /// The document exactly as signed.
    #[serde(borrow)]
    pub desired: &'a RawValue,
}

/// Why a hub-signed document (`/config/set`, `/model/set`, a model manifest) was not
/// believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// Not JSON, or not a signed document.
    #[error("not a signed hub document: {0}")]
    Envelope(String),
    /// An envelope version this agent does not read.
    #[error("signed document version {0} is not supported (expected {SIGNED_CONFIG_VERSION})")]
    Version(u32),
    /// Signed by a key this agent was not told to trust.
    #[error("document signed by key {0}, which is not one of mqtt.hub_public_keys")]
    UnknownKey(String),
    /// The signature does not verify (forged, altered, or made for another gateway).
    #[error("signature does not verify for {0}")]
    BadSignature(String),
    /// The signed bytes are not a valid document.
    #[error("invalid document: {0}")]
    Document(String),
}

fn sign_hub_document<T: Serialize>(
    context: &[u8],
    topic: &str,
    document: &T,
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    let (key, sig, raw) = signed_parts(context, topic, document, key)?;
    let envelope = SignedDesiredConfig {
        v: SIGNED_CONFIG_VERSION,
        key,
        sig,
        desired: &raw,
    };
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

fn open_hub_document<T: serde::de::DeserializeOwned>(
    context: &[u8],
    topic: &str,
    payload: &[u8],
    trusted: &[VerifyingKey],
) -> Result<T, DesiredError> {
    let envelope: SignedDesiredConfig<'_> =
        serde_json::from_slice(payload).map_err(|e| DesiredError::Envelope(e.to_string()))?;
    if envelope.v != SIGNED_CONFIG_VERSION {
        return Err(DesiredError::Version(envelope.v));
    }
    let body = envelope.desired.get();
    verify_hub(context, topic, &envelope.key, &envelope.sig, body, trusted).map_err(|unknown| {
        match unknown {
            Some(key) => DesiredError::UnknownKey(key),
            None if topic.is_empty() => DesiredError::BadSignature("the manifest".into()),
            None => DesiredError::BadSignature(topic.to_string()),
        }
    })?;
    serde_json::from_str(body).map_err(|e| DesiredError::Document(e.to_string()))
}

/// Serialises and signs a desired configuration for `topic` (the gateway's
/// `/config/set`) with the hub's key: the retained `/config/set` payload.
pub fn sign_desired_config(
    topic: &str,
    desired: &DesiredConfig,
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    sign_hub_document(CONFIG_CONTEXT, topic, desired, key)
}

/// Verifies a `/config/set` payload that arrived on `topic` against the hub keys the
/// agent trusts (pinned in its local file), and returns the document.
pub fn open_desired_config(
    topic: &str,
    payload: &[u8],
    trusted: &[VerifyingKey],
) -> Result<DesiredConfig, DesiredError> {
    open_hub_document(CONFIG_CONTEXT, topic, payload, trusted)
}

/// Serialises and signs a desired model for `topic` (the gateway's `/model/set`).
pub fn sign_desired_model(
    topic: &str,
    desired: &DesiredModel,
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    sign_hub_document(MODEL_CONTEXT, topic, desired, key)
}

/// Verifies a `/model/set` payload that arrived on `topic`.
pub fn open_desired_model(
    topic: &str,
    payload: &[u8],
    trusted: &[VerifyingKey],
) -> Result<DesiredModel, DesiredError> {
    open_hub_document(MODEL_CONTEXT, topic, payload, trusted)
}

/// Signs a checked model manifest with the hub's key: the JSON a gateway verifies
/// before it trusts anything the manifest says.
pub fn sign_manifest(manifest: &ModelManifest, key: &SigningKey) -> Result<Vec<u8>, String> {
    sign_hub_document(MANIFEST_CONTEXT, "", manifest, key)
}

/// Verifies a signed manifest against the trusted hub keys and returns it, validated.
pub fn open_manifest(
    signed: &[u8],
    trusted: &[VerifyingKey],
) -> Result<ModelManifest, DesiredError> {
    let manifest: ModelManifest = open_hub_document(MANIFEST_CONTEXT, "", signed, trusted)?;
    manifest
        .validate()
        .map_err(|problems| DesiredError::Document(problems.join("; ")))?;
    Ok(manifest)
}

/// Version of the signed report envelope (`/status`, `/telemetry`).
pub const SIGNED_REPORT_VERSION: u32 = 1;

/// What a gateway reports about itself, signed like its finding batches: the hub
/// believes a gateway's health only from the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// `/status` (and the Last Will): an [`AgentStatus`](crate::protocol::AgentStatus).
    Status,
    /// `/telemetry`: a [`Telemetry`](crate::protocol::Telemetry) sample.
    Telemetry,
    /// `/config/state`: a [`ConfigState`](crate::protocol::ConfigState).
    ConfigState,
    /// `/model/state`: a [`ModelState`](crate::protocol::ModelState).
    ModelState,
}

impl ReportKind {
    fn context(self) -> &'static [u8] {
        match self {
            Self::Status => b"chitti/v1/status",
            Self::Telemetry => b"chitti/v1/telemetry",
            Self::ConfigState => b"chitti/v1/config-state",
            Self::ModelState => b"chitti/v1/model-state",
        }
    }

    /// `status`, `telemetry`, `config-state` or `model-state`: the dead-letter class of
    /// a bad one.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Telemetry => "telemetry",
            Self::ConfigState => "config-state",
            Self::ModelState => "model-state",
        }
    }
}

/// The `/status` and `/telemetry` payload: a report signed by the gateway's key over
/// `"chitti/v1/status"|"chitti/v1/telemetry" 0x00 <topic> 0x00 <report JSON bytes>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport<'a> {
    /// Envelope version ([`SIGNED_REPORT_VERSION`]).
    pub v: u32,
    /// The gateway's Ed25519 public key, lowercase hex.
    pub key: String,
    /// The Ed25519 signature, lowercase hex.
    pub sig: String,
    /// The report exactly as signed.
    #[serde(borrow)]
    pub report: &'a RawValue,
}

/// Why a `/status` or `/telemetry` payload was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not a signed report: an agent older than signed reports, or not JSON at all.
    #[error("not a signed {kind} (an agent older than signed reports must be upgraded): {reason}")]
    Envelope {
        /// `status` or `telemetry`.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// An envelope version this hub does not read.
    #[error("signed report version {0} is not supported (expected {SIGNED_REPORT_VERSION})")]
    Version(u32),
    /// The key is not the one registered for the topic's gateway.
    #[error("key {key} is not registered for gateway {gateway}")]
    UnknownKey {
        /// The key named in the envelope.
        key: String,
        /// `site/gateway` of the topic.
        gateway: String,
    },
    /// The signature does not verify (forged, altered, or made for another topic).
    #[error("{kind} signature does not verify for {gateway}")]
    BadSignature {
        /// `status` or `telemetry`.
        kind: &'static str,
        /// `site/gateway` of the topic.
        gateway: String,
    },
    /// The signed bytes are not a valid report.
    #[error("invalid {kind}: {reason}")]
    Report {
        /// `status` or `telemetry`.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
}

/// Serialises and signs a report for `topic` with the gateway's key: the `/status` or
/// `/telemetry` payload.
pub fn sign_report<T: Serialize>(
    kind: ReportKind,
    topic: &str,
    report: &T,
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    let (key, sig, raw) = signed_parts(kind.context(), topic, report, key)?;
    let envelope = SignedReport {
        v: SIGNED_REPORT_VERSION,
        key,
        sig,
        report: &raw,
    };
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

/// Verifies a `/status` or `/telemetry` payload that arrived on `topic` against the
/// keys registered (and not revoked) for the topic's gateway, and returns the report.
pub fn open_report<T: serde::de::DeserializeOwned>(
    kind: ReportKind,
    topic: &Topic,
    payload: &[u8],
    registered: &[VerifyingKey],
) -> Result<T, ReportError> {
    let gateway = || format!("{}/{}", topic.site, topic.gateway);
    let envelope: SignedReport<'_> =
        serde_json::from_slice(payload).map_err(|e| ReportError::Envelope {
            kind: kind.name(),
            reason: e.to_string(),
        })?;
    if envelope.v != SIGNED_REPORT_VERSION {
        return Err(ReportError::Version(envelope.v));
    }
    let key = parse_public_key(&envelope.key)
        .ok()
        .filter(|k| registered.contains(k))
        .ok_or_else(|| ReportError::UnknownKey {
            key: envelope.key.clone(),
            gateway: gateway(),
        })?;
    let bad = || ReportError::BadSignature {
        kind: kind.name(),
        gateway: gateway(),
    };
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&envelope.sig, &mut sig).map_err(|_| bad())?;
    key.verify_strict(
        &topic_message(
            kind.context(),
            &topic.to_string(),
            envelope.report.get().as_bytes(),
        ),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| bad())?;
    serde_json::from_str(envelope.report.get()).map_err(|e| ReportError::Report {
        kind: kind.name(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicKind;
    use chrono::Utc;
    use uuid::Uuid;

    fn batch() -> FindingBatch {
        FindingBatch {
            batch_id: Uuid::now_v7(),
            sent_at: Utc::now(),
            findings: Vec::new(),
        }
    }

    fn topic(site: &str, gw: &str) -> Topic {
        Topic::new(site, gw, TopicKind::Findings).unwrap()
    }

    #[test]
    fn a_signed_batch_opens_only_with_its_key_on_its_topic() {
        let a = signing_key_from_seed(&[7; 32]);
        let b = signing_key_from_seed(&[9; 32]);
        let t = topic("north", "gw-a");
        let payload = sign_batch(&t.to_string(), &batch(), &a).unwrap();
        let opened = open_batch(&t, &payload, &[a.verifying_key()]).unwrap();
        assert!(opened.findings.is_empty());
        // Not registered for this gateway.
        let err = open_batch(&t, &payload, &[b.verifying_key()]).unwrap_err();
        assert!(matches!(err, BatchError::UnknownKey { .. }), "{err}");
        // Replayed on another gateway's topic, with that gateway's key registered.
        let other = topic("north", "gw-b");
        let err = open_batch(&other, &payload, &[a.verifying_key()]).unwrap_err();
        assert!(matches!(err, BatchError::BadSignature(_)), "{err}");
    }

    #[test]
    fn tampered_or_malformed_payloads_are_rejected_with_a_reason() {
        let a = signing_key_from_seed(&[7; 32]);
        let t = topic("north", "gw-a");
        let payload = String::from_utf8(sign_batch(&t.to_string(), &batch(), &a).unwrap()).unwrap();
        let tampered = payload.replace("\"findings\":[]", "\"findings\":[ ]");
        assert_ne!(tampered, payload);
        assert!(matches!(
            open_batch(&t, tampered.as_bytes(), &[a.verifying_key()]),
            Err(BatchError::BadSignature(_))
        ));
        assert!(matches!(
            open_batch(&t, b"{not json", &[a.verifying_key()]),
            Err(BatchError::Envelope(_))
        ));
        let v2 = payload.replacen("\"v\":1", "\"v\":2", 1);
        assert_eq!(
            open_batch(&t, v2.as_bytes(), &[a.verifying_key()]).unwrap_err(),
            BatchError::Version(2)
        );
        // An unsigned batch is not a signed one.
        let plain = serde_json::to_vec(&batch()).unwrap();
        assert!(matches!(
            open_batch(&t, &plain, &[a.verifying_key()]),
            Err(BatchError::Envelope(_))
        ));
    }

    #[test]
    fn evidence_signatures_bind_site_gateway_and_hash() {
        let a = signing_key_from_seed(&[7; 32]);
        let b = signing_key_from_seed(&[9; 32]);
        let sha = "ab".repeat(32);
        assert_eq!(
            evidence_message("north", "gw-a", &sha),
            [&b"chitti/v1/evidence\0north\0gw-a\0"[..], sha.as_bytes()].concat()
        );
        let sig = sign_evidence("north", "gw-a", &sha, &a);
        assert_eq!(sig.len(), 128);
        verify_evidence("north", "gw-a", &sha, &sig, &a.verifying_key()).unwrap();
        // Another key, gateway, site or hash: refused.
        let bad = |site: &str, gw: &str, sha: &str, key: &SigningKey| {
            verify_evidence(site, gw, sha, &sig, &key.verifying_key()).unwrap_err()
        };
        for err in [
            bad("north", "gw-a", &sha, &b),
            bad("north", "gw-b", &sha, &a),
            bad("south", "gw-a", &sha, &a),
            bad("north", "gw-a", &"cd".repeat(32), &a),
        ] {
            assert!(
                matches!(err, EvidenceSignatureError::BadSignature { .. }),
                "{err}"
            );
        }
        assert_eq!(
            verify_evidence("north", "gw-a", &sha, "zz", &a.verifying_key()),
            Err(EvidenceSignatureError::Malformed)
        );
    }

    #[test]
    fn public_keys_round_trip_as_hex() {
        let a = signing_key_from_seed(&[3; 32]);
        let hex_key = public_key_hex(&a.verifying_key());
        assert_eq!(parse_public_key(&hex_key).unwrap(), a.verifying_key());
        assert!(parse_public_key("zz").is_err());
    }

    #[test]
    fn a_signed_report_opens_only_with_its_key_on_its_topic_and_kind() {
        let a = signing_key_from_seed(&[7; 32]);
        let b = signing_key_from_seed(&[9; 32]);
        let status_a = Topic::new("north", "gw-a", TopicKind::Status).unwrap();
        let status_b = Topic::new("north", "gw-b", TopicKind::Status).unwrap();
        let telemetry_a = Topic::new("north", "gw-a", TopicKind::Telemetry).unwrap();
        let report = serde_json::json!({"online": true});
        let signed = sign_report(ReportKind::Status, &status_a.to_string(), &report, &a).unwrap();
        let opened: serde_json::Value =
            open_report(ReportKind::Status, &status_a, &signed, &[a.verifying_key()]).unwrap();
        assert_eq!(opened, report);
        // Another gateway's topic, another kind, another key, an unsigned report.
        assert!(matches!(
            open_report::<serde_json::Value>(
                ReportKind::Status,
                &status_b,
                &signed,
                &[a.verifying_key()]
            ),
            Err(ReportError::BadSignature { .. })
        ));
        assert!(matches!(
            open_report::<serde_json::Value>(
                ReportKind::Telemetry,
                &telemetry_a,
                &signed,
                &[a.verifying_key()]
            ),
            Err(ReportError::BadSignature { .. })
        ));
        assert!(matches!(
            open_report::<serde_json::Value>(
                ReportKind::Status,
                &status_a,
                &signed,
                &[b.verifying_key()]
            ),
            Err(ReportError::UnknownKey { .. })
        ));
        let unsigned = open_report::<serde_json::Value>(
            ReportKind::Status,
            &status_a,
            br#"{"online": true}"#,
            &[a.verifying_key()],
        )
        .unwrap_err();
        assert!(
            unsigned
                .to_string()
                .starts_with("not a signed status (an agent older"),
            "{unsigned}"
        );
        // Altered after signing.
        let altered = String::from_utf8(signed).unwrap().replace("true", "false");
        assert!(matches!(
            open_report::<serde_json::Value>(
                ReportKind::Status,
                &status_a,
                altered.as_bytes(),
                &[a.verifying_key()]
            ),
            Err(ReportError::BadSignature { .. })
        ));
    }

    #[test]
    fn signed_report_wire_shape() {
        // Ed25519 signatures are deterministic: the whole envelope is pinned.
        let key = signing_key_from_seed(&[7; 32]);
        let signed = sign_report(
            ReportKind::Telemetry,
            "chitti/v1/north/gw-a/telemetry",
            &serde_json::json!({"ts": "2026-11-22T21:40:00Z", "frame_drops": 0}),
            &key,
        )
        .unwrap();
        expect_test::expect![[r#"{"v":1,"key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","sig":"974f402b436e16cdeabcff3c5db362f0c8eefcf1c9299ef682771c2d4d61729df00bfac05bf414e97aa3b3a980c24732bb64c27ed4e7e189835c6f5f0bf97e09","report":{"frame_drops":0,"ts":"2026-11-22T21:40:00Z"}}"#]].assert_eq(std::str::from_utf8(&signed).unwrap());
    }

    #[test]
    fn a_desired_configuration_opens_only_for_its_gateway_under_a_trusted_key() {
        let hub = signing_key_from_seed(&[7; 32]);
        let other = signing_key_from_seed(&[8; 32]);
        let topic = "chitti/v1/north/gw-a/config/set";
        let desired = DesiredConfig {
            version: 3,
            config: "version = 1\n".into(),
            issued_at: "2026-12-07T04:00:00Z".parse().unwrap(),
        };
        let payload = sign_desired_config(topic, &desired, &hub).unwrap();
        expect_test::expect![[r#"{"desired":{"config":"version = 1\n","issued_at":"2026-12-07T04:00:00Z","version":3},"key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","sig":"SIG","v":1}"#]]
            .assert_eq(&pinned_sig(&payload));
        assert_eq!(
            open_desired_config(topic, &payload, &[hub.verifying_key()]).unwrap(),
            desired
        );
        // Another gateway's topic, an untrusted key, an altered document, an ack.
        assert!(matches!(
            open_desired_config(
                "chitti/v1/north/gw-b/config/set",
                &payload,
                &[hub.verifying_key()]
            ),
            Err(DesiredError::BadSignature(_))
        ));
        assert!(matches!(
            open_desired_config(topic, &payload, &[other.verifying_key()]),
            Err(DesiredError::UnknownKey(_))
        ));
        let altered = String::from_utf8(payload.clone())
            .unwrap()
            .replace("\"version\":3", "\"version\":4");
        assert!(matches!(
            open_desired_config(topic, altered.as_bytes(), &[hub.verifying_key()]),
            Err(DesiredError::BadSignature(_))
        ));
        let an_ack = sign_ack(topic, &ack(), &hub).unwrap();
        assert!(matches!(
            open_desired_config(topic, &an_ack, &[hub.verifying_key()]),
            Err(DesiredError::Envelope(_))
        ));
    }

    /// The envelope with its signature replaced by `SIG`, to pin the rest.
    fn pinned_sig(payload: &[u8]) -> String {
        let mut v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        v["sig"] = "SIG".into();
        serde_json::to_string(&v).unwrap()
    }

    fn ack() -> Ack {
        Ack {
            batch_id: Uuid::now_v7(),
            ids: vec![Uuid::now_v7(), Uuid::now_v7()],
            signed_at: Utc::now(),
        }
    }

    #[test]
    fn a_signed_ack_opens_only_with_a_trusted_key_on_its_own_topic() {
        let hub = signing_key_from_seed(&[7; 32]);
        let other = signing_key_from_seed(&[8; 32]);
        let topic = "chitti/v1/north/gw-b/ack";
        let a = ack();
        let payload = sign_ack(topic, &a, &hub).unwrap();
        let trusted = [other.verifying_key(), hub.verifying_key()];
        assert_eq!(open_ack(topic, &payload, &trusted).unwrap(), a);
        // Replayed on another gateway's topic.
        assert_eq!(
            open_ack("chitti/v1/north/gw-a/ack", &payload, &trusted),
            Err(AckError::BadSignature("chitti/v1/north/gw-a/ack".into()))
        );
        // Signed by a key nobody trusts (a gateway's own, say).
        let forged = sign_ack(topic, &a, &other).unwrap();
        assert!(matches!(
            open_ack(topic, &forged, &[hub.verifying_key()]),
            Err(AckError::UnknownKey(_))
        ));
        // An altered id list.
        let text = String::from_utf8(payload).unwrap();
        let altered = text.replace(&a.ids[0].to_string(), &Uuid::now_v7().to_string());
        assert!(matches!(
            open_ack(topic, altered.as_bytes(), &trusted),
            Err(AckError::BadSignature(_))
        ));
        // The old unsigned form.
        let unsigned = format!(r#"{{"ids": ["{}"]}}"#, a.ids[0]);
        assert!(matches!(
            open_ack(topic, unsigned.as_bytes(), &trusted),
            Err(AckError::Envelope(_))
        ));
    }
}
