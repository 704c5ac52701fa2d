//! Evidence uploader: moves evidence blobs (radiometric files, 16-bit PNGs) from the
//! agent's durable outbox to the hub with `PUT {hub}/api/v1/evidence/{sha256}`.
//!
//! It runs on its own OS thread with blocking HTTP, so a 20 MB upload over a slow link
//! never holds up the async runtime. Blobs are named by the sha256 of their bytes, which
//! makes the PUT idempotent: the hub answers 200/204 when it already has one, and the
//! blob is deleted locally only after such an answer.
//!
//! Each PUT is signed with the gateway's Ed25519 key, the one its finding batches are
//! signed with (`mqtt.signing_key_file`): `X-Chitti-Gateway: {site}/{gateway}` and
//! `X-Chitti-Signature` over `"chitti/v1/evidence" 0 site 0 gateway 0 sha256`
//! ([`chitti_common::signing::sign_evidence`]). The hub verifies it against the key it
//! enrolled; no token or password travels. The signature names only the blob, so a
//! replay can only upload the same bytes again.

pub mod config;
pub use config::EvidenceConfig;

use crate::backoff::{Backoff, Jitter, Retries};
use crate::outbox::OutboxError;
use crate::shutdown::Shutdown;
use chitti_common::signing::{sign_evidence, GATEWAY_HEADER, SIGNATURE_HEADER};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// Where evidence waits until the hub has it (the agent's outbox).
pub trait EvidenceStore: Send + Sync + 'static {
    /// Evidence waiting for upload, oldest first (lowercase hex sha256 strings).
    fn evidence_to_upload(&self, limit: usize) -> Vec<String>;
    /// The bytes of one blob (None if it is gone).
    fn evidence(&self, sha256: &str) -> Result<Option<Vec<u8>>, OutboxError>;
    /// The hub has it: delete it locally.
    fn evidence_uploaded(&self, sha256: &str) -> Result<(), OutboxError>;
}

/// The uploader reads and deletes evidence through the outbox.
impl EvidenceStore for crate::outbox::Outbox {
    fn evidence_to_upload(&self, limit: usize) -> Vec<String> {
        crate::outbox::Outbox::evidence_to_upload(self, limit)
    }

    fn evidence(&self, sha256: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        crate::outbox::Outbox::evidence(self, sha256)
    }

    fn evidence_uploaded(&self, sha256: &str) -> Result<(), OutboxError> {
        crate::outbox::Outbox::evidence_uploaded(self, sha256)
    }
}

/// How the uploader reaches the hub and paces itself.
#[derive(Clone)]
pub struct EvidenceUploaderConfig {
    /// The hub's base URL, `http://` or `https://` (a trailing `/` is ignored).
    pub hub_url: String,
    /// This gateway's site id.
    pub site: String,
    /// This gateway's id.
    pub gateway: String,
    /// The gateway's signing key: every PUT is signed with it.
    pub signing_key: SigningKey,
    /// PEM certificates to trust for the hub's HTTPS certificate, instead of the
    /// built-in web PKI roots (for a hub with a private CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Limit for one whole request: connect, send the body, read the answer.
    pub timeout: Duration,
    /// First retry delay after a transient failure.
    pub retry_min: Duration,
    /// Cap of the retry delay (also caps a hub's `Retry-After`).
    pub retry_max: Duration,
    /// How often the outbox is checked when nobody calls [`UploaderHandle::wake`].
    pub poll: Duration,
}

impl EvidenceUploaderConfig {
    /// A configuration for `hub_url`, uploading as `site`/`gateway` signed with
    /// `signing_key`, with the defaults: web PKI roots, 300 s per request, retries from
    /// 1 s up to 5 min, a poll every 30 s.
    pub fn new(
        hub_url: impl Into<String>,
        site: impl Into<String>,
        gateway: impl Into<String>,
        signing_key: SigningKey,
    ) -> Self {
        Self {
            hub_url: hub_url.into(),
            site: site.into(),
            gateway: gateway.into(),
            signing_key,
            ca_pem: None,
            // 20 MB over a 1 Mbit/s cellular uplink takes ~160 s; leave headroom.
            timeout: Duration::from_secs(300),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for EvidenceUploaderConfig {
    // Hand-written so that the signing key never lands in a log line (its public
    // half is shown).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceUploaderConfig")
            .field("hub_url", &self.hub_url)
            .field("site", &self.site)
            .field("gateway", &self.gateway)
            .field(
                "signing_key",
                &format_args!(
                    "<public {}>",
                    chitti_common::signing::public_key_hex(&self.signing_key.verifying_key())
                ),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("timeout", &self.timeout)
            .field("retry_min", &self.retry_min)
            .field("retry_max", &self.retry_max)
            .field("poll", &self.poll)
            .finish()
    }
}

/// Why the uploader cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceUploadError {
    /// The hub URL is not an `http://` or `https://` URL.
    #[error("invalid hub url {url:?}: must start with http:// or https://")]
    InvalidHubUrl {
        /// The URL as configured.
        url: String,
    },
    /// The site or gateway id is not a valid id (`[a-z0-9-]{1,64}`).
    #[error("invalid gateway identity: {0}")]
    InvalidIdentity(String),
    /// The CA PEM cannot be parsed.
    #[error("hub ca pem: {0}")]
    CaPem(String),
    /// The CA PEM holds no certificate.
    #[error("hub ca pem contains no certificate")]
    NoCaCertificate,
    /// A zero timeout or poll interval, or retry bounds out of order.
    #[error("invalid evidence uploader timing: {0}")]
    InvalidTiming(&'static str),
    /// The OS refused to start the thread.
    #[error("cannot start the evidence uploader thread: {0}")]
    Spawn(#[source] io::Error),
}

/// What the uploader has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceUploadStats {
    /// Blobs the hub acknowledged and the store deleted.
    pub uploaded: u64,
    /// Bytes of those blobs.
    pub bytes: u64,
    /// Failed attempts that will be retried (hub or network trouble, store errors).
    pub failures: u64,
    /// Blobs the hub refused for good (4xx other than 408/429); skipped until restart.
    pub rejected: u64,
    /// Blobs whose bytes do not match their name; never sent, skipped until restart.
    pub corrupt: u64,
    /// The last failure, for status pages.
    pub last_error: Option<String>,
    /// Since when every attempt has failed: set by the first failure after a success
    /// (or start), cleared by the next success.
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Talks to a running uploader: wakes it, reads its stats. Cheap to clone.
#[derive(Clone)]
pub struct UploaderHandle {
    shared: Arc<Shared>,
}

impl UploaderHandle {
    /// New evidence is in the store: look now rather than at the next poll. A wake
    /// does not cut short a backoff after a hub failure.
    pub fn wake(&self) {
        *lock(&self.shared.woken) = true;
        self.shared.signal.notify_all();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EvidenceUploadStats {
        lock(&self.shared.stats).clone()
    }
}

impl crate::health::EvidenceGauge for UploaderHandle {
    fn status(&self) -> chitti_common::protocol::EvidenceUploadStatus {
        let stats = self.stats();
        chitti_common::protocol::EvidenceUploadStatus {
            uploaded: stats.uploaded,
            failures: stats.failures,
            failing_since: stats.failing_since,
            last_error: stats.last_error,
        }
    }
}

impl std::fmt::Debug for UploaderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploaderHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Starts the uploader thread. It runs until `stop` is triggered, and notices within
/// [`STOP_CHECK`] while idle or backing off, and between chunks of a body being sent
/// (triggering `stop` and then calling [`UploaderHandle::wake`] ends an idle wait at once).
/// A request stalled in the network is only abandoned at `config.timeout`.
pub fn spawn(
    config: EvidenceUploaderConfig,
    store: Arc<dyn EvidenceStore>,
    stop: Shutdown,
) -> Result<(JoinHandle<()>, UploaderHandle), EvidenceUploadError> {
    let base = config.hub_url.trim_end_matches('/').to_owned();
    let plain_http = base.starts_with("http://");
    if !(plain_http || base.starts_with("https://")) || base.contains(char::is_whitespace) {
        return Err(EvidenceUploadError::InvalidHubUrl {
            url: config.hub_url,
        });
    }
    if config.timeout.is_zero() || config.poll.is_zero() {
        return Err(EvidenceUploadError::InvalidTiming(
            "timeout and poll must be non-zero",
        ));
    }
    if config.retry_min.is_zero() || config.retry_min > config.retry_max {
        return Err(EvidenceUploadError::InvalidTiming(
            "retry_min must be non-zero and not above retry_max",
        ));
    }
    // Checked here so that a bad identity fails at startup, not on every request (an
    // id is also what makes the header value valid).
    for (what, id) in [("site", &config.site), ("gateway", &config.gateway)] {
        chitti_common::protocol::validate_id(what, id)
            .map_err(|e| EvidenceUploadError::InvalidIdentity(e.to_string()))?;
    }
    if plain_http {
        // Signatures are safe to send in clear; the evidence itself is not private
        // from the network then.
        warn!(hub = %base, "evidence is uploaded over plain http");
    }
    let identity = Identity {
        header: format!("{}/{}", config.site, config.gateway),
        site: config.site,
        gateway: config.gateway,
        key: config.signing_key,
    };

    let mut agent_config = ureq::Agent::config_builder()
        // 4xx/5xx are answers we classify, not transport errors.
        .http_status_as_error(false)
        // A redirect cannot replay the streamed body and would send the evidence to
        // another host; a 3xx is retried like any other unexpected answer.
        .max_redirects(0)
        .timeout_global(Some(config.timeout))
        .user_agent(concat!("chitti-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &config.ca_pem {
        let certs = parse_ca_pem(pem)?;
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(certs)))
            .build();
        agent_config = agent_config.tls_config(tls);
    }
    let agent = ureq::Agent::new_with_config(agent_config.build());

    let shared = Arc::new(Shared {
        woken: Mutex::new(false),
        signal: Condvar::new(),
        stats: Mutex::new(EvidenceUploadStats::default()),
    });
    let worker = Worker {
        agent,
        base,
        identity,
        timing: Timing { poll: config.poll },
        store,
        stop,
        shared: Arc::clone(&shared),
        skip: HashSet::new(),
        retries: Backoff::new(config.retry_min, config.retry_max)
            .with_jitter(Jitter::Equal)
            .retries(),
    };
    let thread = std::thread::Builder::new()
        .name("evidence-upload".into())
        .spawn(move || worker.run())
        .map_err(EvidenceUploadError::Spawn)?;
    Ok((thread, UploaderHandle { shared }))
}

/// Longest time the thread goes without looking at the stop flag while it waits.
pub const STOP_CHECK: Duration = Duration::from_millis(50);

// Blobs asked of the store per pass, on top of the ones being skipped.
const BATCH: usize = 32;

// How much of a refusal's body goes into the log.
const BODY_SNIPPET: u64 = 200;

/// The certificates of a CA file (PEM), for a ureq agent's trust anchors.
pub(crate) fn parse_ca_pem(
    pem: &[u8],
) -> Result<Vec<ureq::tls::Certificate<'static>>, EvidenceUploadError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        // A key or anything else in the file is not a trust anchor.
        if let PemItem::Certificate(cert) =
            item.map_err(|err| EvidenceUploadError::CaPem(err.to_string()))?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(EvidenceUploadError::NoCaCertificate);
    }
    Ok(certs)
}

struct Shared {
    woken: Mutex<bool>,
    signal: Condvar,
    stats: Mutex<EvidenceUploadStats>,
}

// A poisoned lock only means another thread panicked mid-update of plain counters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct Timing {
    poll: Duration,
}

// Who the uploads are signed as.
struct Identity {
    site: String,
    gateway: String,
    // `{site}/{gateway}`, the value of the gateway header.
    header: String,
    key: SigningKey,
}

struct Worker {
    agent: ureq::Agent,
    base: String,
    identity: Identity,
    timing: Timing,
    store: Arc<dyn EvidenceStore>,
    stop: Shutdown,
    shared: Arc<Shared>,
    // Corrupt or refused blobs: left in the store (a person may want them) but not
    // retried until restart, so they cannot keep the uploader in a hot loop.
    skip: HashSet<String>,
    // Consecutive transient failures, for the backoff.
    retries: Retries,
}

enum Pass {
    // The batch was full and made progress: there may be more right away.
    More,
    // Nothing left to do (or nothing that can be done now): wait for a wake or the poll.
    Idle,
    // The hub or the network failed: wait this long.
    Backoff(Duration),
    Stopped,
}

enum Outcome {
    // The blob left the to-upload list (uploaded, or newly skipped).
    Done,
    // The blob is still listed and nothing changed (gone, or a store error).
    Unchanged,
    Retry(Duration),
    Stopped,
}

impl Worker {
    fn run(mut self) {
        info!(hub = %self.base, "evidence uploader started");
        while !self.stopped() {
            match self.pass() {
                Pass::More => {}
                Pass::Idle => self.wait(self.timing.poll, true),
                Pass::Backoff(delay) => self.wait(delay, false),
                Pass::Stopped => break,
            }
        }
        info!("evidence uploader stopped");
    }

    fn stopped(&self) -> bool {
        self.stop.is_triggered()
    }

    // Waits up to `limit`, in slices short enough to notice `stop` (whose trigger does
    // not signal this thread's condition variable; the handle's wake does). A wake ends the wait only when `wakeable`; it
    // stays pending otherwise, so the pass after a backoff still sees it.
    fn wait(&self, limit: Duration, wakeable: bool) {
        let deadline = Instant::now() + limit;
        let mut woken = lock(&self.shared.woken);
        loop {
            if self.stopped() {
                return;
            }
            if wakeable && *woken {
                *woken = false;
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let slice = (deadline - now).min(STOP_CHECK);
            woken = self
                .shared
                .signal
                .wait_timeout(woken, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn pass(&mut self) -> Pass {
        // A wake that came before this listing is served by it.
        *lock(&self.shared.woken) = false;
        let want = BATCH + self.skip.len();
        let names = self.store.evidence_to_upload(want);
        let full = names.len() >= want;
        if !full {
            // The whole outbox is in view: forget skipped blobs that were evicted.
            let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
            self.skip.retain(|name| listed.contains(name.as_str()));
        }
        let mut progressed = false;
        for name in &names {
            if self.stopped() {
                return Pass::Stopped;
            }
            if self.skip.contains(name) {
                continue;
            }
            match self.upload_one(name) {
                Outcome::Done => progressed = true,
                Outcome::Unchanged => {}
                Outcome::Retry(delay) => return Pass::Backoff(delay),
                Outcome::Stopped => return Pass::Stopped,
            }
        }
        // Without progress the next listing would be the same one: wait instead.
        if full && progressed {
            Pass::More
        } else {
            Pass::Idle
        }
    }

    fn upload_one(&mut self, name: &str) -> Outcome {
        if !is_sha256_hex(name) {
            // The name goes into the URL path, and it could never match a digest anyway.
            error!(sha256 = %name.escape_debug(), "evidence name is not a lowercase sha256; skipping it");
            self.skip_blob(
                name,
                Skip::Corrupt,
                format!("evidence name {name:?} is not a sha256"),
            );
            return Outcome::Done;
        }
        let bytes = match self.store.evidence(name) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                debug!(sha256 = name, "evidence is gone from the store");
                return Outcome::Unchanged;
            }
            Err(err) => {
                warn!(sha256 = name, %err, "cannot read evidence");
                self.failure(format!("cannot read evidence {name}: {err}"));
                return Outcome::Unchanged;
            }
        };
        let actual = sha256_hex(&bytes);
        if actual != name {
            error!(
                sha256 = name,
                actual = %actual,
                bytes = bytes.len(),
                "evidence bytes do not match their sha256; not uploading it"
            );
            self.skip_blob(
                name,
                Skip::Corrupt,
                format!("evidence {name} is corrupt (bytes hash to {actual})"),
            );
            return Outcome::Done;
        }

        let mut response = match self.put(name, &bytes) {
            Ok(response) => response,
            Err(_) if self.stopped() => return Outcome::Stopped,
            Err(err) => {
                let delay = self.retries.next_delay();
                warn!(
                    sha256 = name,
                    %err,
                    retry_in_ms = delay.as_millis() as u64,
                    "evidence upload failed; retrying"
                );
                self.failure(format!("upload of {name} failed: {err}"));
                return Outcome::Retry(delay);
            }
        };
        let status = response.status().as_u16();
        match classify(status) {
            Verdict::Stored => {
                // The hub answered, so it is healthy: the next failure starts afresh.
                self.retries.reset();
                if let Err(err) = self.store.evidence_uploaded(name) {
                    // The hub has it; the next pass sends it again (idempotent PUT)
                    // and tries the delete once more.
                    error!(sha256 = name, %err, "hub has the evidence but the store cannot delete it");
                    self.failure(format!("cannot delete uploaded evidence {name}: {err}"));
                    return Outcome::Unchanged;
                }
                info!(
                    sha256 = name,
                    bytes = bytes.len(),
                    status,
                    "evidence uploaded"
                );
                let mut stats = lock(&self.shared.stats);
                stats.uploaded += 1;
                stats.bytes += bytes.len() as u64;
                stats.failing_since = None;
                Outcome::Done
            }
            Verdict::Rejected => {
                self.retries.reset();
                let body = body_snippet(&mut response);
                error!(
                    sha256 = name,
                    status,
                    body = %body,
                    "hub rejected evidence; skipping it until restart"
                );
                self.skip_blob(
                    name,
                    Skip::Rejected,
                    format!("hub rejected evidence {name}: status {status}: {body}"),
                );
                Outcome::Done
            }
            Verdict::Retry => {
                let delay = self.retries.next_delay_or(retry_after(response.headers()));
                warn!(
                    sha256 = name,
                    status,
                    retry_in_ms = delay.as_millis() as u64,
                    "hub cannot take evidence now; retrying"
                );
                self.failure(format!("hub answered {status} for evidence {name}"));
                Outcome::Retry(delay)
            }
        }
    }

    fn put(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{}/api/v1/evidence/{name}", self.base);
        let id = &self.identity;
        let signature = sign_evidence(&id.site, &id.gateway, name, &id.key);
        let request = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            // Set by hand because the body is a reader (which ureq would chunk).
            .header("Content-Length", bytes.len().to_string())
            .header(GATEWAY_HEADER, id.header.as_str())
            .header(SIGNATURE_HEADER, signature);
        // The reader checks the stop flag, so a stop does not wait for a 20 MB body.
        let mut body = StopReader {
            bytes,
            stop: &self.stop,
        };
        request.send(ureq::SendBody::from_reader(&mut body))
    }

    fn failure(&self, message: String) {
        let mut stats = lock(&self.shared.stats);
        stats.failures += 1;
        stats.failing_since.get_or_insert_with(chrono::Utc::now);
        stats.last_error = Some(message);
    }

    fn skip_blob(&mut self, name: &str, why: Skip, message: String) {
        self.skip.insert(name.to_owned());
        let mut stats = lock(&self.shared.stats);
        match why {
            Skip::Corrupt => stats.corrupt += 1,
            Skip::Rejected => stats.rejected += 1,
        }
        stats.last_error = Some(message);
    }
}

enum Skip {
    Corrupt,
    Rejected,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Stored,
    Rejected,
    Retry,
}

fn classify(status: u16) -> Verdict {
    match status {
        200 | 201 | 204 => Verdict::Stored,
        408 | 429 => Verdict::Retry,
        400..=499 => Verdict::Rejected,
        // 5xx, and anything unexpected (1xx, 202, 3xx): the blob stays and is retried.
        _ => Verdict::Retry,
    }
}

// Only the delta-seconds form; an HTTP-date falls back to our own backoff.
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn body_snippet(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut buf = Vec::new();
    // The answer is for the log only; a body that cannot be read is left empty.
    let _ = response
        .body_mut()
        .as_reader()
        .take(BODY_SNIPPET)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

struct StopReader<'a> {
    bytes: &'a [u8],
    stop: &'a Shutdown,
}

impl Read for StopReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.is_triggered() {
            return Err(io::Error::other("evidence uploader stopping"));
        }
        self.bytes.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    // Only a safety net, so that a broken uploader fails the test instead of hanging
    // it; nothing is expected to take more than a fraction of it.
    const WAIT: Duration = Duration::from_secs(30);

    const SITE: &str = "north-yard";
    const GATEWAY: &str = "gw-07";

    fn test_key() -> SigningKey {
        chitti_common::signing::signing_key_from_seed(&[7; 32])
    }

    fn unauthorized() -> Reply {
        Reply {
            body: "bad signature".into(),
            ..reply(401)
        }
    }

    /// What the hub checks before anything else: the gateway header and a signature
    /// by the gateway's key over the path's name.
    fn signed_by_the_gateway(path: &str, headers: &HashMap<String, String>) -> bool {
        let Some(name) = path.strip_prefix("/api/v1/evidence/") else {
            return false;
        };
        let (Some(claimed), Some(signature)) =
            (headers.get(GATEWAY_HEADER), headers.get(SIGNATURE_HEADER))
        else {
            return false;
        };
        claimed == &format!("{SITE}/{GATEWAY}")
            && chitti_common::signing::verify_evidence(
                SITE,
                GATEWAY,
                name,
                signature,
                &test_key().verifying_key(),
            )
            .is_ok()
    }

    /// An outbox in memory that tells the test when a blob is marked uploaded.
    struct MemStore {
        blobs: Mutex<Vec<(String, Vec<u8>)>>,
        uploaded_calls: Mutex<Vec<String>>,
        uploaded_tx: mpsc::Sender<String>,
        listed_tx: Mutex<Option<mpsc::Sender<()>>>,
    }

    impl MemStore {
        fn new() -> (Arc<Self>, mpsc::Receiver<String>) {
            let (uploaded_tx, rx) = mpsc::channel();
            let store = Arc::new(Self {
                blobs: Mutex::new(Vec::new()),
                uploaded_calls: Mutex::new(Vec::new()),
                uploaded_tx,
                listed_tx: Mutex::new(None),
            });
            (store, rx)
        }

        fn add(&self, bytes: &[u8]) -> String {
            let name = sha256_hex(bytes);
            self.add_named(&name, bytes);
            name
        }

        fn add_named(&self, name: &str, bytes: &[u8]) {
            lock(&self.blobs).push((name.to_owned(), bytes.to_vec()));
        }

        fn names(&self) -> Vec<String> {
            lock(&self.blobs).iter().map(|(n, _)| n.clone()).collect()
        }

        /// Tells of every listing from now on: a listing after a failure proves that
        /// the uploader has finished handling that failure.
        fn listings(&self) -> mpsc::Receiver<()> {
            let (tx, rx) = mpsc::channel();
            *lock(&self.listed_tx) = Some(tx);
            rx
        }

        fn uploaded_calls(&self) -> Vec<String> {
            lock(&self.uploaded_calls).clone()
        }
    }

    impl EvidenceStore for MemStore {
        fn evidence_to_upload(&self, limit: usize) -> Vec<String> {
            if let Some(tx) = lock(&self.listed_tx).as_ref() {
                let _ = tx.send(());
            }
            self.names().into_iter().take(limit).collect()
        }

        fn evidence(&self, sha256: &str) -> Result<Option<Vec<u8>>, OutboxError> {
            Ok(lock(&self.blobs)
                .iter()
                .find(|(n, _)| n == sha256)
                .map(|(_, b)| b.clone()))
        }

        fn evidence_uploaded(&self, sha256: &str) -> Result<(), OutboxError> {
            lock(&self.blobs).retain(|(n, _)| n != sha256);
            lock(&self.uploaded_calls).push(sha256.to_owned());
            let _ = self.uploaded_tx.send(sha256.to_owned());
            Ok(())
        }
    }

    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    #[derive(Debug)]
    struct Recorded {
        method: String,
        path: String,
        // Lowercased names.
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    /// A tiny HTTP/1.1 server with a script of answers per path (201 once the script
    /// is used up), answering 401 to a request not signed by the test gateway's key,
    /// as the hub does. One request per connection, answered with `Connection: close`.
    struct Hub {
        addr: SocketAddr,
        url: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
        // One line per exchange: "PUT /path -> 503" or "error: ...".
        events: mpsc::Receiver<String>,
        done: Arc<AtomicBool>,
    }

    impl Hub {
        fn start(script: Vec<(&str, Vec<Reply>)>, tls: Option<Arc<rustls::ServerConfig>>) -> Hub {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut script: HashMap<String, VecDeque<Reply>> = script
                .into_iter()
                .map(|(path, replies)| (path.to_owned(), replies.into()))
                .collect();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (events_tx, events) = mpsc::channel();
            let done = Arc::new(AtomicBool::new(false));
            let (recorded, stop) = (Arc::clone(&requests), Arc::clone(&done));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = stream else { continue };
                    let result = match &tls {
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(Arc::clone(config)).unwrap();
                            exchange(rustls::StreamOwned::new(conn, tcp), &mut script, &recorded)
                        }
                        None => exchange(tcp, &mut script, &recorded),
                    };
                    let event = result.unwrap_or_else(|err| format!("error: {err}"));
                    let _ = events_tx.send(event);
                }
            });
            Hub {
                addr,
                url: format!("{scheme}://{addr}"),
                requests,
                events,
                done,
            }
        }

        fn next_event(&self) -> String {
            self.events.recv_timeout(WAIT).expect("hub saw no request")
        }

        fn paths(&self) -> Vec<String> {
            lock(&self.requests)
                .iter()
                .map(|r| r.path.clone())
                .collect()
        }
    }

    impl Drop for Hub {
        fn drop(&mut self) {
            // Unblocks the accept loop so that the server thread ends.
            self.done.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
        }
    }

    fn exchange<S: Read + Write>(
        stream: S,
        script: &mut HashMap<String, VecDeque<Reply>>,
        recorded: &Mutex<Vec<Recorded>>,
    ) -> io::Result<String> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::other("head cut short"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .map(|v| v.parse().expect("content-length"))
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let answer = if signed_by_the_gateway(&path, &headers) {
            script
                .get_mut(&path)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| reply(201))
        } else {
            unauthorized()
        };
        lock(recorded).push(Recorded {
            method: method.clone(),
            path: path.clone(),
            headers,
            body,
        });
        let mut response = format!(
            "HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
            answer.status,
            answer.body.len()
        );
        for (name, value) in &answer.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&answer.body);
        let stream = reader.get_mut();
        stream.write_all(response.as_bytes())?;
        stream.flush()?;
        Ok(format!("{method} {path} -> {}", answer.status))
    }

    fn config(hub: &Hub) -> EvidenceUploaderConfig {
        EvidenceUploaderConfig {
            timeout: WAIT,
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(40),
            // Long enough that only a wake (or a retry) can start a pass in a test.
            poll: Duration::from_secs(3600),
            ..EvidenceUploaderConfig::new(format!("{}/", hub.url), SITE, GATEWAY, test_key())
        }
    }

    fn next_uploaded(rx: &mpsc::Receiver<String>) -> String {
        rx.recv_timeout(WAIT).expect("nothing was marked uploaded")
    }

    // Joins from a helper thread so that a thread that never stops fails the test.
    fn join(thread: JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(thread.join());
        });
        rx.recv_timeout(WAIT)
            .expect("uploader thread did not stop")
            .expect("uploader thread panicked");
    }

    fn path(name: &str) -> String {
        format!("/api/v1/evidence/{name}")
    }

    fn blob(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn retries_transient_answers_then_marks_each_blob_uploaded_once() {
        let (store, uploaded) = MemStore::new();
        let a = store.add(&blob(1, 300_000));
        let b = store.add(&blob(2, 10));
        let retry_now = Reply {
            headers: vec![("Retry-After", "0".into())],
            ..reply(503)
        };
        let hub = Hub::start(
            vec![
                (&path(&a), vec![reply(503), retry_now, reply(200)]),
                (&path(&b), vec![reply(204)]),
            ],
            None,
        );
        let stop = Shutdown::new();
        let (thread, handle) = spawn(config(&hub), store.clone(), stop.clone()).unwrap();

        assert_eq!(next_uploaded(&uploaded), a);
        assert_eq!(next_uploaded(&uploaded), b);
        // No wake: the stop must be seen during the idle wait on its own.
        stop.trigger();
        join(thread);

        assert_eq!(hub.paths(), [path(&a), path(&a), path(&a), path(&b)]);
        for request in lock(&hub.requests).iter() {
            assert_eq!(request.method, "PUT");
            assert_eq!(request.headers[GATEWAY_HEADER], "north-yard/gw-07");
            assert!(signed_by_the_gateway(&request.path, &request.headers));
            assert!(!request.headers.contains_key("authorization"));
            assert_eq!(request.headers["content-type"], "application/octet-stream");
            assert_eq!(
                request.headers["content-length"],
                request.body.len().to_string()
            );
            assert!(!request.headers.contains_key("transfer-encoding"));
            assert_eq!(path(&sha256_hex(&request.body)), request.path);
        }
        assert_eq!(store.uploaded_calls(), [a, b]);
        assert!(store.names().is_empty());
        let stats = handle.stats();
        assert_eq!(
            (
                stats.uploaded,
                stats.bytes,
                stats.failures,
                stats.rejected,
                stats.corrupt
            ),
            (2, 300_010, 2, 0, 0)
        );
        assert!(stats.last_error.unwrap().contains("503"));
    }

    #[test]
    fn skips_corrupt_and_rejected_blobs_and_keeps_going() {
        let (store, uploaded) = MemStore::new();
        let corrupt = sha256_hex(b"what was stored");
        store.add_named(&corrupt, b"what is on disk now");
        let misnamed = "../../etc/passwd";
        store.add_named(misnamed, b"x");
        let refused = store.add(&blob(3, 1000));
        let fine = store.add(&blob(4, 1000));
        let refusal = Reply {
            body: "e".repeat(300),
            ..reply(400)
        };
        let hub = Hub::start(vec![(&path(&refused), vec![refusal, reply(200)])], None);
        let stop = Shutdown::new();
        let (thread, handle) = spawn(config(&hub), store.clone(), stop.clone()).unwrap();

        assert_eq!(next_uploaded(&uploaded), fine);
        // A second pass, started by the wake alone, lists the skipped blobs again.
        let late = store.add(&blob(5, 1000));
        handle.wake();
        assert_eq!(next_uploaded(&uploaded), late);
        stop.trigger();
        handle.wake();
        join(thread);

        // The refused blob was sent once; the corrupt and misnamed ones never.
        assert_eq!(hub.paths(), [path(&refused), path(&fine), path(&late)]);
        assert_eq!(store.uploaded_calls(), [fine, late]);
        assert_eq!(store.names(), [corrupt, misnamed.to_owned(), refused]);
        let stats = handle.stats();
        assert_eq!(
            (
                stats.uploaded,
                stats.failures,
                stats.rejected,
                stats.corrupt
            ),
            (2, 0, 1, 2)
        );
        // The log line and last_error carry the status and the first 200 bytes only.
        let last = stats.last_error.unwrap();
        assert!(last.contains("status 400"), "{last}");
        assert!(last.contains(&"e".repeat(200)) && !last.contains(&"e".repeat(201)));
    }

    #[test]
    fn uploads_signed_with_another_key_are_refused_and_kept() {
        let (store, _uploaded) = MemStore::new();
        let a = store.add(&blob(7, 100));
        let hub = Hub::start(Vec::new(), None);
        let stop = Shutdown::new();
        let config = EvidenceUploaderConfig {
            signing_key: chitti_common::signing::signing_key_from_seed(&[8; 32]),
            ..config(&hub)
        };
        let (thread, handle) = spawn(config, store.clone(), stop.clone()).unwrap();
        assert_eq!(hub.next_event(), format!("PUT {} -> 401", path(&a)));
        stop.trigger();
        handle.wake();
        join(thread);
        // Refused for good until restart (a key problem), but never deleted.
        assert!(store.uploaded_calls().is_empty());
        assert_eq!(store.names(), [a]);
        let stats = handle.stats();
        assert_eq!((stats.uploaded, stats.rejected), (0, 1));
        assert!(stats.last_error.unwrap().contains("status 401"));
    }

    #[test]
    fn stop_ends_the_thread_during_a_long_backoff() {
        let (store, _uploaded) = MemStore::new();
        let a = store.add(b"evidence");
        let later = Reply {
            headers: vec![("Retry-After", "3600".into())],
            ..reply(429)
        };
        let hub = Hub::start(vec![(&path(&a), vec![later])], None);
        let stop = Shutdown::new();
        let config = EvidenceUploaderConfig {
            retry_min: Duration::from_secs(3600),
            retry_max: Duration::from_secs(7200),
            ..config(&hub)
        };
        let (thread, handle) = spawn(config, store.clone(), stop.clone()).unwrap();

        assert_eq!(hub.next_event(), format!("PUT {} -> 429", path(&a)));
        stop.trigger();
        join(thread);

        assert_eq!(hub.paths(), [path(&a)]);
        assert!(store.uploaded_calls().is_empty());
        assert_eq!(store.names(), [a]);
        assert_eq!(handle.stats().failures, 1);
    }

    struct Pki {
        ca_pem: String,
        server: Arc<rustls::ServerConfig>,
    }

    // A private CA and a certificate for 127.0.0.1 signed by it, made fresh per run.
    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chitti test hub ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    #[test]
    fn https_hub_is_trusted_through_the_configured_ca_only() {
        let pki = pki();
        let (store, uploaded) = MemStore::new();
        let a = store.add(&blob(6, 50_000));
        let hub = Hub::start(Vec::new(), Some(pki.server.clone()));
        let stop = Shutdown::new();
        let trusting = EvidenceUploaderConfig {
            ca_pem: Some(pki.ca_pem.clone().into_bytes()),
            ..config(&hub)
        };
        let (thread, handle) = spawn(trusting, store.clone(), stop.clone()).unwrap();
        assert_eq!(next_uploaded(&uploaded), a);
        stop.trigger();
        join(thread);
        assert_eq!(hub.paths(), [path(&a)]);
        assert_eq!(handle.stats().uploaded, 1);

        // Without the CA (web PKI roots) the same hub is refused and nothing is sent.
        let b = store.add(b"more evidence");
        let listings = store.listings();
        let stop = Shutdown::new();
        let (thread, handle) = spawn(config(&hub), store.clone(), stop.clone()).unwrap();
        assert_eq!(hub.next_event(), format!("PUT {} -> 201", path(&a)));
        assert!(hub.next_event().starts_with("error: "));
        // The retry's listing comes after the failed attempt was counted.
        for _ in 0..2 {
            listings.recv_timeout(WAIT).expect("no listing");
        }
        stop.trigger();
        join(thread);
        assert_eq!(hub.paths(), [path(&a)]);
        assert_eq!(store.names(), [b]);
        let stats = handle.stats();
        assert_eq!(stats.uploaded, 0);
        assert!(stats.failures >= 1);
        let last = stats.last_error.unwrap();
        assert!(last.to_lowercase().contains("certificate"), "{last}");
    }

    #[test]
    fn spawn_rejects_unusable_configuration() {
        let (store, _uploaded) = MemStore::new();
        let store: Arc<dyn EvidenceStore> = store;
        let stop = Shutdown::new();
        let base = EvidenceUploaderConfig::new("https://hub.example", SITE, GATEWAY, test_key());
        let cases = [
            (
                EvidenceUploaderConfig {
                    hub_url: "ftp://hub.example".into(),
                    ..base.clone()
                },
                "invalid hub url \"ftp://hub.example\": must start with http:// or https://",
            ),
            (
                EvidenceUploaderConfig {
                    gateway: "gw\n07".into(),
                    ..base.clone()
                },
                "invalid gateway identity: gateway id \"gw\\n07\" is invalid: use 1 to 64 characters of a-z, 0-9 and '-'",
            ),
            (
                EvidenceUploaderConfig {
                    ca_pem: Some(b"not a pem at all".to_vec()),
                    ..base.clone()
                },
                "hub ca pem contains no certificate",
            ),
            (
                EvidenceUploaderConfig {
                    retry_min: Duration::from_secs(10),
                    retry_max: Duration::from_secs(1),
                    ..base.clone()
                },
                "invalid evidence uploader timing: retry_min must be non-zero and not above retry_max",
            ),
            (
                EvidenceUploaderConfig {
                    timeout: Duration::ZERO,
                    ..base.clone()
                },
                "invalid evidence uploader timing: timeout and poll must be non-zero",
            ),
        ];
        for (config, message) in cases {
            let err = spawn(config, store.clone(), stop.clone()).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        // The signing key never shows in the config's Debug; its public half does.
        let debug = format!("{base:?}");
        assert!(
            !debug.contains(&hex::encode(test_key().to_bytes())),
            "{debug}"
        );
        assert!(debug.contains(&hex::encode(test_key().verifying_key().to_bytes())));
    }

    #[test]
    fn status_classes() {
        for status in [200, 201, 204] {
            assert_eq!(classify(status), Verdict::Stored, "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422, 499] {
            assert_eq!(classify(status), Verdict::Rejected, "{status}");
        }
        for status in [100, 202, 301, 307, 408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(status), Verdict::Retry, "{status}");
        }
    }

    #[test]
    fn retry_after_takes_delta_seconds_only() {
        let mut headers = ureq::http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn names_are_lowercase_sha256_hex() {
        let name = sha256_hex(b"abc");
        assert_eq!(
            name,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&name));
        assert!(!is_sha256_hex(&name.to_uppercase()));
        assert!(!is_sha256_hex(&name[1..]));
        assert!(!is_sha256_hex("../../etc/passwd"));
    }
}
