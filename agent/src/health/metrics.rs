//! Prometheus `/metrics` endpoint: text exposition format 0.0.4 over a minimal
//! HTTP/1.1 server on a local address.
//!
//! The server answers one request per connection and closes it, which is all a
//! Prometheus scraper (or `curl`) needs, and keeps the parser small enough to trust
//! with whatever arrives on the port.

use crate::shutdown::Shutdown;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// Frames a camera delivered to the pipeline (counter; label `camera`).
pub const FRAMES_TOTAL: &str = "chitti_agent_frames_total";
/// Frames a camera dropped (counter; label `camera`).
pub const FRAME_DROPS_TOTAL: &str = "chitti_agent_frame_drops_total";
/// Findings waiting in the outbox (gauge).
pub const OUTBOX_FINDINGS: &str = "chitti_agent_outbox_findings";
/// Bytes held by the outbox (gauge).
pub const OUTBOX_BYTES: &str = "chitti_agent_outbox_bytes";
/// Entries the outbox evicted to stay within its limits (counter; label `kind`).
pub const OUTBOX_EVICTED_TOTAL: &str = "chitti_agent_outbox_evicted_total";
/// Findings by state (counter; label `state`).
pub const FINDINGS_TOTAL: &str = "chitti_agent_findings_total";
/// `/ack`s refused (unsigned, forged, another gateway's): nothing was deleted.
pub const ACKS_REFUSED_TOTAL: &str = "chitti_agent_acks_refused_total";
/// Verified `/ack`s that answered no batch in flight (replays, duplicates).
pub const ACKS_UNMATCHED_TOTAL: &str = "chitti_agent_acks_unmatched_total";
/// 1 while the MQTT session is up, else 0 (gauge).
pub const MQTT_CONNECTED: &str = "chitti_agent_mqtt_connected";
/// Median analysis latency of the last window, in seconds (gauge).
pub const ANALYSIS_LATENCY_SECONDS: &str = "chitti_agent_analysis_latency_seconds";
/// Evidence blobs the hub acknowledged (counter).
pub const EVIDENCE_UPLOADED_TOTAL: &str = "chitti_agent_evidence_uploaded_total";
/// 1 while the component detector is degraded (a model should run but cannot), else 0
/// (gauge).
pub const DETECTOR_DEGRADED: &str = "chitti_agent_detector_degraded";
/// Component detections completed (counter).
pub const DETECTOR_RUNS_TOTAL: &str = "chitti_agent_detector_runs_total";
/// Component detections that failed (counter).
pub const DETECTOR_ERRORS_TOTAL: &str = "chitti_agent_detector_errors_total";
/// Frames handed to the detector but replaced by a newer one before it took them
/// (counter).
pub const DETECTOR_SKIPPED_TOTAL: &str = "chitti_agent_detector_skipped_total";
/// Duration of the last component detection, seconds (gauge).
pub const DETECTOR_SECONDS: &str = "chitti_agent_detector_seconds";

/// Label naming the camera.
pub const LABEL_CAMERA: &str = "camera";
/// Label naming what the outbox evicted.
pub const LABEL_KIND: &str = "kind";
/// Label naming a finding's state.
pub const LABEL_STATE: &str = "state";

pub use chitti_common::metrics_text::CONTENT_TYPE;

// Cap of a request head; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
// A client gets this long to send its head, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
// More connections than this at once are dropped: nobody legitimate needs them.
const MAX_CONNECTIONS: usize = 64;
// How long, and how much, a closing connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
// How long answers already being written may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the endpoint reports: called once per scrape. It runs on the runtime, so it
/// should only read counters (atomics, short locks), never block.
pub trait MetricsSource: Send + Sync {
    /// Writes the current values.
    fn render(&self, out: &mut MetricsWriter);
}

impl<F> MetricsSource for F
where
    F: Fn(&mut MetricsWriter) + Send + Sync,
{
    fn render(&self, out: &mut MetricsWriter) {
        self(out)
    }
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound (in use, not local, no permission).
    #[error("cannot bind metrics endpoint to {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

/// Binds the endpoint's listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

pub use chitti_common::metrics_text::MetricsWriter;

/// Serves `/metrics` on `listener` until `shutdown` is triggered. Then it stops accepting, gives answers in progress a moment to finish,
/// and returns. Errors on one connection are logged and never end the server.
pub async fn serve(listener: TcpListener, source: Arc<dyn MetricsSource>, shutdown: Shutdown) {
    match listener.local_addr() {
        Ok(addr) => info!(%addr, "metrics endpoint listening"),
        Err(err) => info!(%err, "metrics endpoint listening (address unknown)"),
    }
    let mut connections = JoinSet::new();
    loop {
        if shutdown.is_triggered() {
            break;
        }
        tokio::select! {
            () = shutdown.triggered() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        debug!(%peer, "too many metrics connections; dropping one");
                        continue;
                    }
                    let source = Arc::clone(&source);
                    connections.spawn(handle(stream, peer, source));
                }
                Err(err) => {
                    // Typically out of file descriptors: pause instead of spinning.
                    warn!(%err, "metrics endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = done {
                    warn!(%err, "metrics connection task failed");
                }
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            left = connections.len(),
            "aborting slow metrics connections"
        );
    }
    connections.shutdown().await;
    info!("metrics endpoint stopped");
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, source: Arc<dyn MetricsSource>) {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Some(plain(408, "Request Timeout", "request timeout\n", "")),
        Ok(Err(HeadError::Closed)) => None,
        Ok(Err(HeadError::Io(err))) => {
            debug!(%peer, %err, "metrics request unreadable");
            None
        }
        Ok(Err(HeadError::TooLarge)) => Some(plain(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
            "",
        )),
        Ok(Err(HeadError::Truncated)) => Some(bad_request()),
        Ok(Ok(head)) => Some(respond(&head, source.as_ref())),
    };
    let Some(response) = response else { return };
    let written = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!(%peer, %err, "cannot write metrics answer"),
        Err(_) => debug!(%peer, "metrics client too slow to take the answer"),
    }
    // Closing with unread input makes the kernel send a reset, which can destroy the
    // answer before the client reads it (an oversized head, say): drain a little first.
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

enum HeadError {
    // The client closed before sending anything (a TCP health probe).
    Closed,
    // The client closed mid-head.
    Truncated,
    TooLarge,
    Io(io::Error),
}

// Reads up to the blank line that ends the head, never more than MAX_HEAD bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = (MAX_HEAD - head.len()).min(chunk.len());
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if head.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Truncated
            });
        }
        // Look again only where the terminator can newly be.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head[from..]) {
            head.truncate(from + end);
            return Ok(head);
        }
    }
}

// Where the head ends: after CRLF CRLF, or after LF LF (which RFC 9112 lets us accept).
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

fn respond(head: &[u8], source: &dyn MetricsSource) -> Vec<u8> {
    let Some(request) = parse_head(head) else {
        return bad_request();
    };
    // Scrapers may add a query string; it selects nothing here.
    let path = request.target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return plain(404, "Not Found", "not found\n", "");
    }
    let with_body = match request.method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return plain(
                405,
                "Method Not Allowed",
                "method not allowed\n",
                "Allow: GET, HEAD\r\n",
            )
        }
    };
    let mut writer = MetricsWriter::new();
    // A bug in a source must cost one scrape, not the connection task or the server.
    if std::panic::catch_unwind(AssertUnwindSafe(|| source.render(&mut writer))).is_err() {
        error!("metrics source panicked while rendering");
        return plain(500, "Internal Server Error", "metrics unavailable\n", "");
    }
    for reason in writer.dropped() {
        warn!(%reason, "metric sample dropped");
    }
    let body = writer.finish();
    let mut response = header(200, "OK", CONTENT_TYPE, body.len(), "");
    if with_body {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

struct Request<'a> {
    method: &'a str,
    target: &'a str,
}

fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines();
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !target.bytes().all(|b| b.is_ascii_graphic())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return None;
    }
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, _) = line.split_once(':')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
    }
    Some(Request { method, target })
}

fn bad_request() -> Vec<u8> {
    plain(400, "Bad Request", "bad request\n", "")
}

fn plain(status: u16, reason: &str, body: &str, extra: &str) -> Vec<u8> {
    let mut response = header(
        status,
        reason,
        "text/plain; charset=utf-8",
        body.len(),
        extra,
    );
    response.extend_from_slice(body.as_bytes());
    response
}

fn header(status: u16, reason: &str, content_type: &str, length: usize, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_source(out: &mut MetricsWriter) {
        out.counter(
            FRAMES_TOTAL,
            "Frames delivered.",
            &[(LABEL_CAMERA, "dock \"north\"")],
            1200.0,
        );
        out.gauge(MQTT_CONNECTED, "1 while connected.", &[], 1.0);
        // Interleaved on purpose: the writer must still group the family.
        out.counter(
            FRAMES_TOTAL,
            "ignored: help comes from the first sample",
            &[(LABEL_CAMERA, "C:\\cams\nsouth")],
            7.0,
        );
        out.gauge(ANALYSIS_LATENCY_SECONDS, "Median latency.", &[], 0.0425);
    }

    const EXPECTED: &str = "\
# HELP chitti_agent_frames_total Frames delivered.
# TYPE chitti_agent_frames_total counter
chitti_agent_frames_total{camera=\"dock \\\"north\\\"\"} 1200
chitti_agent_frames_total{camera=\"C:\\\\cams\\nsouth\"} 7
# HELP chitti_agent_mqtt_connected 1 while connected.
# TYPE chitti_agent_mqtt_connected gauge
chitti_agent_mqtt_connected 1
# HELP chitti_agent_analysis_latency_seconds Median latency.
# TYPE chitti_agent_analysis_latency_seconds gauge
chitti_agent_analysis_latency_seconds 0.0425
";

    #[test]
    fn writer_groups_families_and_escapes() {
        let mut out = MetricsWriter::new();
        assert!(out.is_empty());
        agent_source(&mut out);
        assert_eq!(out.finish(), EXPECTED);
    }

    #[test]
    fn writer_drops_what_prometheus_would_reject() {
        let mut out = MetricsWriter::new();
        out.gauge("1starts_with_digit", "h", &[], 1.0);
        out.gauge("has-dash", "h", &[], 1.0);
        out.gauge("ok", "h", &[("bad-label", "v")], 1.0);
        out.gauge("ok", "h", &[("__reserved", "v")], 1.0);
        out.gauge("ok", "h", &[("a", "1"), ("a", "2")], 1.0);
        assert!(out.is_empty());
        out.gauge(
            "ok",
            "multi\nline \\ help",
            &[("a", "1"), ("b", "")],
            f64::NAN,
        );
        out.counter("ok", "h", &[], 1.0);
        out.gauge("ok", "h", &[], f64::INFINITY);
        out.gauge("ok", "h", &[], f64::NEG_INFINITY);
        out.gauge("ok", "h", &[], -3.0);
        out.gauge("ok", "h", &[], 1e300);
        out.gauge("ok", "h", &[], 2.5e-7);
        assert_eq!(
            out.finish(),
            "# HELP ok multi\\nline \\\\ help\n# TYPE ok gauge\n\
             ok{a=\"1\",b=\"\"} NaN\nok +Inf\nok -Inf\nok -3\nok 1e300\nok 2.5e-7\n"
        );
    }

    #[test]
    fn request_heads() {
        fn parse(head: &[u8]) -> Option<(&str, &str)> {
            parse_head(head).map(|r| (r.method, r.target))
        }
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            Some(("GET", "/metrics?x=1"))
        );
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /m\xffetrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    struct Answer {
        status: u16,
        headers: String,
        body: String,
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (headers, body) = raw.split_once("\r\n\r\n").expect("a head");
        let status = headers[9..12].parse().unwrap();
        let length: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        if !headers.starts_with("HEAD") {
            assert!(body.len() == length || body.is_empty());
        }
        Answer {
            status,
            headers: headers.to_owned(),
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn serves_metrics_and_survives_bad_requests_until_shutdown() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let shutdown_tx = shutdown.clone();
        let server = tokio::spawn(serve(listener, Arc::new(agent_source), shutdown));

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(ok.status, 200);
        assert!(ok
            .headers
            .contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert_eq!(ok.body, EXPECTED);
        for name in [FRAMES_TOTAL, MQTT_CONNECTED, ANALYSIS_LATENCY_SECONDS] {
            assert_eq!(ok.body.matches(&format!("# HELP {name} ")).count(), 1);
            assert_eq!(ok.body.matches(&format!("# TYPE {name} ")).count(), 1);
        }

        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        assert!(head
            .headers
            .contains(&format!("Content-Length: {}\r\n", EXPECTED.len())));

        assert_eq!(
            exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await.status,
            404
        );
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(post.status, 405);
        assert!(post.headers.contains("\r\nAllow: GET, HEAD"));
        assert_eq!(
            exchange(addr, b"\x16\x03\x01garbage\r\n\r\n").await.status,
            400
        );
        // Cut short mid-head, then the client half-closes.
        let mut cut = TcpStream::connect(addr).await.unwrap();
        cut.write_all(b"GET /metr").await.unwrap();
        cut.shutdown().await.unwrap();
        let mut answer = String::new();
        cut.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        // A head over the cap.
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD + 100, b'a');
        assert_eq!(exchange(addr, &big).await.status, 431);
        // A probe that connects and leaves.
        drop(TcpStream::connect(addr).await.unwrap());

        // Still serving after all of that.
        let again = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert_eq!((again.status, again.body.as_str()), (200, EXPECTED));

        shutdown_tx.trigger();
        server.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_panicking_source_costs_one_scrape() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let shutdown_tx = shutdown.clone();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let source = move |out: &mut MetricsWriter| {
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("first render fails");
            }
            out.gauge(OUTBOX_FINDINGS, "Findings waiting.", &[], 3.0);
        };
        let server = tokio::spawn(serve(listener, Arc::new(source), shutdown));
        assert_eq!(
            exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")
                .await
                .status,
            500
        );
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(ok.status, 200);
        assert!(ok.body.ends_with("chitti_agent_outbox_findings 3\n"));
        // Dropping the sender also stops the server.
        shutdown_tx.trigger();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_already_requested_returns_at_once() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let shutdown = Shutdown::new();
        shutdown.trigger();
        serve(listener, Arc::new(agent_source), shutdown).await;
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot bind metrics endpoint to {addr}: ")),
            "{message}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
