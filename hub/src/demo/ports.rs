//! Where the demo listens: the default ports when they are free, any free port when a
//! default is taken (Mosquitto holds 1883 on many machines), and exactly what was asked
//! for when a flag names an address.

use crate::serve::ServeError;
use std::net::{Ipv4Addr, SocketAddr};

/// The demo's default MQTT address (loopback: the demo's gateways run in-process).
pub const DEFAULT_MQTT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1883);
/// The demo's default HTTP address.
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// One listener's address, as decided before the hub starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// The address handed to the hub (port 0: the kernel picks one when it binds).
    pub addr: SocketAddr,
    /// The default address that was taken, when the demo fell back to a free port.
    pub fallback_from: Option<SocketAddr>,
}

/// Decides a listener's address. An address given with a flag is used as it is and
/// must be free (a taken one is [`ServeError::PortInUse`] naming the flag, before
/// anything is written to the data folder); the default falls back to a free port on
/// the same interface when it is taken.
pub fn resolve(
    requested: Option<SocketAddr>,
    default: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<Listen, ServeError> {
    match requested {
        Some(addr) => {
            if addr.port() != 0 && !crate::broker::port_is_free(addr) {
                return Err(ServeError::PortInUse { what, addr, flag });
            }
            Ok(Listen {
                addr,
                fallback_from: None,
            })
        }
        None if crate::broker::port_is_free(default) => Ok(Listen {
            addr: default,
            fallback_from: None,
        }),
        None => Ok(Listen {
            addr: SocketAddr::new(default.ip(), 0),
            fallback_from: Some(default),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_default_falls_back_to_a_free_port_on_the_same_interface() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        let l = resolve(None, taken, "HTTP", "--http ADDR").unwrap();
        assert_eq!(l.addr, SocketAddr::new(taken.ip(), 0));
        assert_eq!(l.fallback_from, Some(taken));
    }

    #[test]
    fn a_free_default_is_used_as_it_is() {
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let l = resolve(None, free, "HTTP", "--http ADDR").unwrap();
        assert_eq!(l.addr, free);
        assert_eq!(l.fallback_from, None);
    }

    #[test]
    fn a_taken_address_given_with_a_flag_is_an_error_naming_the_flag() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        let err = resolve(Some(taken), DEFAULT_MQTT, "MQTT", "--mqtt ADDR").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&taken.to_string()) && text.contains("--mqtt ADDR"),
            "{text}"
        );
        // Port 0 means "any": never taken.
        let any = resolve(
            Some("127.0.0.1:0".parse().unwrap()),
            DEFAULT_MQTT,
            "MQTT",
            "--mqtt",
        )
        .unwrap();
        assert_eq!(any.addr.port(), 0);
    }
}
