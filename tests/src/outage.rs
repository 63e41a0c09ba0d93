//! A TCP proxy in front of LocalStack that can be taken down and brought back: while down it
//! refuses new connections and resets open ones, exactly what clients see when the service
//! stops, while LocalStack keeps its queues and buckets. Point only the processes under test at
//! it, so other tests sharing the LocalStack are unaffected.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct OutageProxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    up: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

impl OutageProxy {
    /// A proxy on a free 127.0.0.1 port forwarding to `upstream` (`host:port`), up.
    pub async fn start(upstream: &str) -> Arc<Self> {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Arc::new(Self { addr, upstream, up: Mutex::new(None) });
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
        let handle = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        conns.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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

    /// Bring it back on the same port.
    pub async fn up(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(1024).unwrap());
    }
}
