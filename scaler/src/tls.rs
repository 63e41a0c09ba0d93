//! HTTPS for the external metrics API: the certificate and key from PEM files (a mounted
//! `kubernetes.io/tls` Secret), or a self-signed pair generated at start for development and for
//! an APIService with `insecureSkipTLSVerify`. HTTP/2 and HTTP/1.1 (ALPN), as the API server's
//! aggregation layer speaks both.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{Error, Result};

/// Where the serving certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Files,
    /// Generated at start; the PEM certificate, so a client can pin it.
    SelfSigned {
        cert_pem: String,
    },
}

/// Certificate and key from files when both exist; a self-signed pair when none is configured
/// or when both configured files are absent (an optional Secret that was not created).
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    self_signed_names: &[String],
) -> Result<(Arc<ServerConfig>, CertSource)> {
    let (chain, private_key, source) = match (cert, key) {
        (Some(c), Some(k)) if c.exists() || k.exists() => {
            let chain = CertificateDer::pem_file_iter(c)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("certificate {}: {e}", c.display())))?;
            if chain.is_empty() {
                return Err(Error::Tls(format!("certificate {}: no CERTIFICATE block", c.display())));
            }
            // The key's contents are never logged; only its path.
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| Error::Tls(format!("key {}: {e}", k.display())))?;
            info!(cert = %c.display(), "serving HTTPS with the configured certificate");
            (chain, key, CertSource::Files)
        }
        (c, _) => {
            if let Some(c) = c {
                warn!(cert = %c.display(), "configured certificate and key are absent; generating a self-signed pair");
            } else {
                info!("no certificate configured; generating a self-signed pair");
            }
            let (chain, key, cert_pem) = self_signed(self_signed_names)?;
            (chain, key, CertSource::SelfSigned { cert_pem })
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| Error::Tls(format!("certificate and key do not form a usable pair: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), source))
}

/// A self-signed certificate for `names` (DNS names or IP addresses) with its key.
pub fn self_signed(names: &[String]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String)> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| Error::Tls(e.to_string()))?;
    let cert_pem = certified.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    Ok((vec![certified.cert.der().clone()], key, cert_pem))
}

/// Serve `router` over TLS on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, router: Router, shutdown: CancellationToken) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %e, "accepting an HTTPS connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Small responses: do not let Nagle hold the second frame of a reply for the client's ACK.
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return debug!(%peer, "TLS handshake timed out"),
            };
            let service = TowerToHyperService::new(router);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!(%peer, error = %e, "HTTPS connection ended with an error") },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_when_nothing_is_configured_or_the_secret_is_absent() {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (_, source) = server_config(None, None, &names).unwrap();
        assert!(matches!(source, CertSource::SelfSigned { ref cert_pem } if cert_pem.contains("BEGIN CERTIFICATE")));
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (_, source) = server_config(Some(&c), Some(&k), &names).unwrap();
        assert!(matches!(source, CertSource::SelfSigned { .. }));
    }

    #[test]
    fn files_are_used_when_present_and_errors_name_the_file() {
        let names = vec!["localhost".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, certified.cert.pem()).unwrap();
        std::fs::write(&k, certified.signing_key.serialize_pem()).unwrap();
        let (config, source) = server_config(Some(&c), Some(&k), &names).unwrap();
        assert_eq!(source, CertSource::Files);
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

        std::fs::remove_file(&k).unwrap();
        let err = server_config(Some(&c), Some(&k), &names).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
        std::fs::write(&k, "not a key").unwrap();
        let err = server_config(Some(&c), Some(&k), &names).unwrap_err().to_string();
        assert!(err.contains("tls.key") && !err.contains("not a key"), "{err}");
    }
}
