//! SIGTERM / SIGINT handling: the first signal cancels the token (stop receiving, finish
//! in-flight jobs); a second one exits at once.

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Cancel `token` on the first SIGTERM or Ctrl-C; exit the process on the second.
pub fn install(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        warn!("shutdown signal received; finishing in-flight jobs (send again to exit now)");
        token.cancel();
        wait_for_signal().await;
        warn!("second shutdown signal; exiting immediately");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
