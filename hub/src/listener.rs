//! The hub's HTTP accept loop: what `axum::serve` does, plus the limits a listener
//! facing the network needs.
//!
//! - **Header-read timeout** (`http.header_read_timeout_s`): a client must send a
//!   request's whole header within it, the first request's and every later one's on a
//!   kept-alive connection, or the connection is closed. A slowloris client (a byte of
//!   header now and then) or an idle kept-alive socket holds nothing for longer.
//!   Response bodies (the live event stream, a large PDF) are not cut.
//! - **Connection cap** (`http.max_connections`): beyond it a new connection is closed
//!   at once (the client sees the connection reset and may retry), so sockets and memory
//!   stay bounded whatever arrives.
//! - **Graceful stop**: on shutdown the listener closes, requests in flight finish
//!   (at most [`DRAIN_TIMEOUT`]), kept-alive connections are closed.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Longest the stop waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Time a client has to send a request's header.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` turns true. Every request carries
/// `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut refused_at_cap: u64 = 0;
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%err, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused_at_cap += 1;
            // Once, then every thousandth: a flood must not flood the log too.
            if refused_at_cap % 1000 == 1 {
                tracing::warn!(%peer, max_connections = limits.max_connections,
                    refused = refused_at_cap, "http: connection refused at the cap (http.max_connections)");
            }
            drop(stream);
            continue;
        };
        let service = app.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "http connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: requests still running after the drain timeout; dropped");
    }
}
