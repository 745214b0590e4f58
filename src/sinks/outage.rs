//! A TCP relay in front of Elasticsearch that can be cut: how a scenario
//! (or the chaos menu) makes Elasticsearch unreachable without touching
//! Elasticsearch. While cut, open connections are dropped and new ones
//! closed at once, as a host that went away looks to an HTTP client.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct OutageRelay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutageRelayError {
    #[error("Elasticsearch outages need an http:// URL (a relay cannot pass TLS on with the right host name): {0}")]
    NotPlainHttp(String),
    #[error("cannot open the relay: {0}")]
    Io(#[from] std::io::Error),
}

impl OutageRelay {
    /// A relay on loopback to the host and port of `url` (`http://` only).
    /// Returns it and the URL to use instead of `url`.
    pub async fn start(url: &str) -> Result<(Self, String), OutageRelayError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| OutageRelayError::NotPlainHttp(url.to_owned()))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, watched) = watch::channel(false);
        let task = tokio::spawn(relay(listener, upstream, watched));
        let relayed = format!("http://{addr}/{path}");
        Ok((
            Self { addr, cut, task },
            relayed.trim_end_matches('/').to_owned(),
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (true) or restores (false) the way to Elasticsearch.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for OutageRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(listener: TcpListener, upstream: String, cut: watch::Receiver<bool>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of descriptors, say: do not spin on it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        if *cut.borrow() {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        socket.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_cut_relay_drops_connections_until_restored() {
        let upstream = echo_server().await;
        let (relay, url) = OutageRelay::start(&format!("http://{upstream}"))
            .await
            .unwrap();
        assert_eq!(url, format!("http://{}", relay.addr()));
        assert_eq!(round_trip(relay.addr()).await.unwrap(), b"ping");
        // An open connection dies with the cut.
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        relay.set_cut(true);
        let after = open.read(&mut buf).await;
        assert!(matches!(after, Ok(0) | Err(_)), "{after:?}");
        assert!(round_trip(relay.addr()).await.is_err());
        relay.set_cut(false);
        assert_eq!(round_trip(relay.addr()).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn only_plain_http_can_be_relayed() {
        let refused = OutageRelay::start("https://es.example:9200").await;
        assert!(matches!(refused, Err(OutageRelayError::NotPlainHttp(_))));
        let (_relay, url) = OutageRelay::start("http://127.0.0.1:9/prefix")
            .await
            .unwrap();
        assert!(url.ends_with("/prefix"), "{url}");
    }
}
