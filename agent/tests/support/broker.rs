//! An embedded rumqttd for tests and benchmarks, hosted as its README describes (the
//! broker's `start()` on its own thread), on a free port.

use std::time::Duration;

/// Longest wait for the broker to accept connections.
const START_GUARD: Duration = Duration::from_secs(90);

pub use chitti_test_support::free_port;

/// Starts rumqttd on a free port on its own thread (as its README hosts it); returns
/// the port. The broker lives until the test process ends.
pub fn start_rumqttd() -> u16 {
    let port = free_port();
    let config = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 2097152
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&config).unwrap();
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let _ = broker.start();
        })
        .unwrap();
    // The listener binds on the broker thread: wait until it accepts.
    wait_for_port(port);
    port
}

/// Blocks until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + START_GUARD;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
