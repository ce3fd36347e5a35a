//! What both binaries serve and log the same way: /metrics (Prometheus text), /healthz and
//! /readyz on a small HTTP endpoint, and logs on stderr.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
};
use tracing::warn;

/// Logs to stderr, filtered by `HERALD_LOG` (default `info`), coloured only on a terminal (tests
/// and log collectors read plain text). For both Herald binaries.
pub fn init_logs() {
    init_logs_with(&[]);
}

/// [`init_logs`], with filter `directives` (`target=level`) added after `HERALD_LOG`'s.
pub fn init_logs_with(directives: &[String]) {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into());
    for d in directives {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// What a telemetry endpoint serves: the metrics text, and whether the process is ready.
pub trait Scrape: Send + Sync + 'static {
    fn render(&self) -> String;
    fn ready(&self) -> bool;
}

/// Where [`serve`] takes connections from: a [`TcpListener`], or a test's stand-in.
pub trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<Self::Stream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// How long accepting pauses after it failed (out of descriptors, say): long enough not to
/// spin, short enough that probes barely notice.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves /metrics, /healthz and /readyz on `listener` until the process ends.
pub async fn serve(listener: impl Accept, metrics: Arc<impl Scrape>) {
    let mut failing = false;
    loop {
        let mut stream = match listener.accept().await {
            Ok(stream) => {
                failing = false;
                stream
            }
            Err(e) => {
                // Once per run of failures, and never in a tight loop.
                if !failing {
                    warn!(error = %e, "telemetry: accepting a connection; pausing before the next try");
                }
                failing = true;
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                // Rendering reads every map entry: on the blocking pool, never on the thread
                // of the loop that beats or decides.
                "/metrics" => {
                    let metrics = metrics.clone();
                    let body = tokio::task::spawn_blocking(move || metrics.render()).await;
                    ("200 OK", body.unwrap_or_default())
                }
                "/healthz" => ("200 OK", "ok\n".into()),
                "/readyz" if metrics.ready() => ("200 OK", "ok\n".into()),
                "/readyz" => ("503 Service Unavailable", "not ready\n".into()),
                _ => ("404 Not Found", "not found\n".into()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                warn!(error = %e, "telemetry response");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Nothing;

    impl Scrape for Nothing {
        fn render(&self) -> String {
            String::new()
        }
        fn ready(&self) -> bool {
            false
        }
    }

    /// A listener that is always out of descriptors.
    struct Exhausted(Arc<AtomicUsize>);

    impl Accept for Exhausted {
        type Stream = tokio::io::DuplexStream;

        async fn accept(&self) -> std::io::Result<Self::Stream> {
            let tries = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            // A loop that does not wait never lets the clock below move: stop it here.
            assert!(tries < 1000, "accept retried {tries} times without pausing");
            // EMFILE: the process is out of descriptors.
            Err(std::io::Error::from_raw_os_error(24))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_pause() {
        let tries = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn(serve(Exhausted(tries.clone()), Arc::new(Nothing)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = tries.load(Ordering::Relaxed);
        assert!((10..=12).contains(&n), "{n} tries in one second, one per {ACCEPT_PAUSE:?} expected");
        server.abort();
    }
}
