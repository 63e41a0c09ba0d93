//! A TCP proxy in front of LocalStack that can be taken down and brought back: while down it
//! refuses new connections and resets open ones, exactly what clients see when the service
//! stops, while LocalStack keeps its queues and buckets. It can also freeze: connections are
//! accepted and bytes read, but nothing is passed on until it thaws, as with a service whose
//! process is stopped (SIGSTOP). Point only the processes under test at it, so other tests
//! sharing the LocalStack are unaffected.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct OutageProxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    up: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    frozen: watch::Sender<bool>,
}

/// Copy one direction of a connection, holding every chunk while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl OutageProxy {
    /// A proxy on a free 127.0.0.1 port forwarding to `upstream` (`host:port`), up.
    pub async fn start(upstream: &str) -> Arc<Self> {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Arc::new(Self { addr, upstream, up: Mutex::new(None), frozen: watch::channel(false).0 });
        proxy.serve(listener);
        proxy
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`-style settings.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let (token, upstream) = (stop.clone(), self.upstream);
        let frozen = self.frozen.clone();
        let handle = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        let (to_server, to_client) = (frozen.subscribe(), frozen.subscribe());
                        conns.spawn(async move {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                let (client_read, client_write) = client.into_split();
                                let (server_read, server_write) = server.into_split();
                                tokio::join!(
                                    pump(client_read, server_write, to_server),
                                    pump(server_read, client_write, to_client)
                                );
                            }
                        });
                    }
                    _ = token.cancelled() => break,
                }
            }
            // Dropping the listener refuses new connections; aborting resets the open ones.
            conns.abort_all();
        });
        *self.up.lock().unwrap() = Some((stop, handle));
    }

    /// Take the service "down": refuse and reset connections.
    pub async fn down(&self) {
        let current = self.up.lock().unwrap().take();
        if let Some((stop, handle)) = current {
            stop.cancel();
            let _ = handle.await;
        }
    }

    /// Freeze (`true`) or thaw (`false`): while frozen, requests are accepted and answer nothing.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// Bring it back on the same port.
    pub async fn up(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(1024).unwrap());
    }
}
