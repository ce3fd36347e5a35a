//! What both binaries serve and log the same way: /metrics (Prometheus text), /healthz and
//! /readyz on a small HTTP endpoint, and logs on stderr.
//!
//! The endpoint is open to whoever reaches its address, so it holds at most
//! [`MAX_CONNECTIONS`] at once (more are closed as they come) and gives each
//! [`REQUEST_WITHIN`] to send its request and as long again to take the answer: idle or slow
//! connections cannot use up the process's descriptors.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
    sync::Semaphore,
    time::timeout,
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
/// Connections served at once; one more is closed at once. Prometheus and the kubelet's probes
/// each use one at a time.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection has to send its request, and then to take the answer.
pub const REQUEST_WITHIN: Duration = Duration::from_secs(5);

/// Serves /metrics, /healthz and /readyz on `listener` until the process ends.
pub async fn serve(listener: impl Accept, metrics: Arc<impl Scrape>) {
    let mut failing = false;
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
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
        // At the cap, the newcomer is closed (dropped) here.
        let Ok(permit) = open.clone().try_acquire_owned() else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            answer(stream, metrics).await;
            drop(permit);
        });
    }
}

/// Reads one request from `stream` and answers it, within [`REQUEST_WITHIN`] each.
async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, metrics: Arc<impl Scrape>) {
    let mut buf = [0u8; 2048];
    let Ok(Ok(n)) = timeout(REQUEST_WITHIN, stream.read(&mut buf)).await else { return };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        // Rendering reads every map entry: on the blocking pool, never on the thread of the
        // loop that beats or decides.
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
    match timeout(REQUEST_WITHIN, stream.write_all(response.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "telemetry response"),
        Err(_) => warn!("telemetry response: the client took nothing for {REQUEST_WITHIN:?}"),
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

    /// A listener handing out the server's ends of the connections a test opens.
    struct Handout(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>>);

    impl Accept for Handout {
        type Stream = tokio::io::DuplexStream;

        async fn accept(&self) -> std::io::Result<Self::Stream> {
            match self.0.lock().await.recv().await {
                Some(stream) => Ok(stream),
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_capped_and_closed() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let server = tokio::spawn(serve(Handout(tokio::sync::Mutex::new(rx)), Arc::new(Nothing)));
        let connect = || async {
            let (client, server_end) = tokio::io::duplex(4096);
            tx.send(server_end).await.unwrap();
            client
        };
        // Idle connections up to the cap are held; the next is closed at once.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(connect().await);
        }
        let mut over = connect().await;
        let mut buf = [0u8; 64];
        let closed = timeout(Duration::from_millis(10), over.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0))), "over the cap: {closed:?}");
        // The idle ones are closed once their time to ask is up, and a request is answered.
        tokio::time::sleep(REQUEST_WITHIN + Duration::from_millis(10)).await;
        for c in &mut idle {
            assert!(matches!(c.read(&mut buf).await, Ok(0)), "an idle connection outlived its time");
        }
        let mut asking = connect().await;
        asking.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        asking.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("ok\n"), "{answer}");
        server.abort();
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
