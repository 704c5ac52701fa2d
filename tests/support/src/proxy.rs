//! [`CuttableProxy`]: a TCP link or a database that goes away and comes back.

/// A TCP proxy the test can cut (every connection closed, new ones refused) and
/// restore: a network link or a database that goes away.
pub struct CuttableProxy {
    /// Its port.
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    /// Proxies 127.0.0.1:port → 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Self {
        Self::start_with(target, true).await
    }

    /// The same, starting up or (`up` false) cut.
    pub async fn start_with(target: u16, up: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::watch::channel(up);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut state = rx.clone();
                if !*state.borrow() {
                    drop(inbound); // link down: connection refused in effect
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up: tx }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}
