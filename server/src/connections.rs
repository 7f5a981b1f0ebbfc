//! TCP connections: the accept loop, its caps and its timeouts.
//!
//! Every connection (a page, an API call, a WebSocket) holds an [`Admission`] for as long as its
//! socket lives, upgraded or not. Past the global or the per-address cap a connection gets a short
//! 503 and is closed at once, so a flood never reaches hyper. The global cap also stays below the
//! process's open-file limit less [`RESERVED_DESCRIPTORS`], so the database, its WAL and the
//! photo files can always be opened: a connection flood cannot stop a flush.
//!
//! Timeouts: hyper's header-read timeout (from the first byte of a request, or the end of the
//! previous one), and [`IdleTimeout`], which closes a socket that moved no byte either way for a
//! while. Body deadlines belong to the routes that read bodies.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, warn};

/// Descriptors kept free for SQLite (database, WAL, shared memory), photo and shard files,
/// temporary upload files and the log.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Largest request head (request line and headers) read before answering 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Counts open connections, in all and per address.
pub struct Gate {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
}

impl Gate {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for one more connection from `ip`, if the caps allow it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let mine = per_address.get(&ip).copied().unwrap_or(0);
        if mine >= self.max_per_address || self.total.load(Ordering::Relaxed) >= self.max_total {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        per_address.insert(ip, mine + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admission { gate: self.clone(), ip })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

/// One admitted connection; its place is given back when dropped.
pub struct Admission {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_address = self.gate.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_address.remove(&self.ip);
            }
        }
        self.gate.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Raises the soft open-file limit to the hard one and returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        let limit = limit.rlim_cur as u64;
        limit
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// The global cap in force: the configured one, held below the open-file limit.
pub fn connection_cap(configured: usize, open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(16);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Accepts and serves connections until `shutdown` resolves, then waits (at most `drain`) for
/// requests in progress. WebSocket sessions close themselves on the same signal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    gate: Arc<Gate>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let (stopping, stop_watch) = tokio::sync::watch::channel(false);
    // Each connection task holds a sender; when all are dropped, every connection has ended.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut last_error_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or memory: the caps should prevent it; back off rather
                // than spin, and do not flood the log.
                if last_error_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    warn!(%err, "accept failed; backing off");
                    last_error_logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admission) = gate.admit(peer.ip()) else {
            debug!(%peer, "connection refused: too many connections");
            refuse(&stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleTimeout::new(stream, timeouts.idle, admission));
        let service = app.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let (alive, mut stopping) = (alive.clone(), stop_watch.clone());
        tokio::spawn(async move {
            let _alive = alive;
            tokio::pin!(connection);
            // The guard `wait_for` returns is not `Send`: drop it at once.
            let stop = async move { stopping.wait_for(|stop| *stop).await.map(|_| ()) };
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop => {
                    // Finish the request in progress, take no new one.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(alive);
    if tokio::time::timeout(drain, all_ended.recv()).await.is_err() {
        debug!("requests still running at shutdown were cut off");
    }
}

/// Tells a refused client why, without waiting on it: one non-blocking write, then close.
fn refuse(stream: &TcpStream) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"the server has too many open connections from your address or in all; retry in a few seconds"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// A socket that fails with `TimedOut` once no byte has moved either way for `idle`, and that
/// holds its connection's [`Admission`] for as long as it lives (upgraded or not).
pub struct IdleTimeout<T> {
    inner: T,
    idle: Duration,
    last_active: Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _admission: Admission,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, idle: Duration, admission: Admission) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last_active: now,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _admission: admission,
        }
    }

    /// Whether the connection has been idle too long. Registers the waker otherwise. The timer
    /// is only moved when it fires, not on every byte.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last_active + self.idle;
            if Instant::now() >= due {
                return true;
            }
            self.deadline.as_mut().reset(tokio::time::Instant::from_std(due));
        }
    }

    /// A read or write that moved bytes counts as activity; one still waiting fails once the
    /// connection has been idle too long.
    fn observe<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.last_active = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.observe(cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.observe(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.observe(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_all_and_places_come_back() {
        let gate = Gate::new(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let a1 = gate.admit(a).expect("first");
        let _a2 = gate.admit(a).expect("second");
        assert!(gate.admit(a).is_none(), "per-address cap");
        let _b1 = gate.admit(b).expect("another address");
        assert!(gate.admit(c).is_none(), "global cap");
        drop(a1);
        assert!(gate.admit(c).is_some(), "a closed connection frees its place");
        assert_eq!(gate.refused(), 2);
    }

    #[test]
    fn the_cap_leaves_descriptors_for_storage() {
        assert_eq!(connection_cap(10_000, 1024), 1024 - RESERVED_DESCRIPTORS as usize);
        assert_eq!(connection_cap(100, 1 << 20), 100);
        assert_eq!(connection_cap(100, 10), 16);
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_silent_socket_times_out() {
        let gate = Gate::new(10, 10);
        let (near, _far) = tokio::io::duplex(64);
        let admission = gate.admit("10.0.0.1".parse().unwrap()).expect("admit");
        let mut io = IdleTimeout::new(near, Duration::from_millis(200), admission);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(2), io.read(&mut buf)).await.expect("ends in time");
        assert_eq!(read.expect_err("times out").kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(190));
    }
}
