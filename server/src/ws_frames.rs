//! WebSocket frames from a client, looked at before they are buffered.
//!
//! The WebSocket library reads a whole message into memory before anyone can see what it is.
//! This reader sits between the socket and the library and reads each frame's header first.
//! A message up to [`SMALL_MESSAGE`] bytes passes straight through. A larger one must be one
//! unfragmented text frame that starts with `{"type":"upload_image"`. Before its payload is
//! read, it must also get twice its size from a budget shared by the whole process (the frame,
//! then its parsed text, then the decoded photo: at most two of them live at once), and it
//! waits (its sender is not read) until the budget has room. Anything else over the limit is refused
//! from its header alone: the connection ends and [`Refusal`] says why, so the session can
//! close it with code 1009.
//!
//! The budget held for a large frame is given back when the reader comes back for the next
//! frame: by then the session has handled the message and dropped it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Messages up to this size need no budget and can be anything.
pub const SMALL_MESSAGE: u64 = app::protocol::MAX_MESSAGE_BYTES as u64;
/// Payload bytes looked at to recognise an `upload_image` frame.
const PREFIX: usize = 64;
const UPLOAD_PREFIX: &str = "\"upload_image\"";
/// Bytes of memory a large frame holds per byte while it is read and handled.
const HELD_PER_BYTE: u64 = 2;

/// Why the reader refused a frame, for the session's close frame.
#[derive(Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<String>>>);

impl Refusal {
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, reason: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

/// Memory for large frames, shared by every connection of the process, counted in KiB.
#[derive(Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX / 2).clamp(1, u32::MAX / 2);
        Self { kib: Arc::new(Semaphore::new(total_kib as usize)), total_kib }
    }

    /// KiB not held by any frame right now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

enum State {
    /// Reading a frame header: `have` bytes of it so far.
    Header { buf: [u8; 14], have: usize },
    /// A large frame's first payload bytes, needed to see what it is.
    Prefix { header: Vec<u8>, len: u64, mask: [u8; 4], prefix: Vec<u8> },
    /// Waiting for budget; then `remaining` payload bytes follow.
    Waiting { acquire: Acquire, remaining: u64 },
    Payload { remaining: u64 },
    Refused,
}

pub struct FrameGuard<T> {
    inner: T,
    state: State,
    /// Bytes already looked at, to hand to the reader before anything else.
    pending: Vec<u8>,
    pending_at: usize,
    /// Length of the data message being received, over its fragments.
    message_len: u64,
    max_frame: u64,
    budget: Budget,
    held: Option<OwnedSemaphorePermit>,
    refusal: Refusal,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
}

/// Bytes the header needs, as far as `have` tells (2 until the length byte is read).
fn header_len(have: &[u8]) -> usize {
    let Some(&second) = have.get(1) else { return 2 };
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if second & 0x80 != 0 { 4 } else { 0 }
}

fn parse_header(bytes: &[u8]) -> Header {
    let (first, second) = (bytes[0], bytes[1]);
    let (len, mut at) = match second & 0x7F {
        126 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(raw), 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = (second & 0x80 != 0).then(|| {
        let mask = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        at += 4;
        mask
    });
    debug_assert_eq!(at, bytes.len());
    Header { fin: first & 0x80 != 0, opcode: first & 0x0F, mask, len }
}

/// Whether a (unmasked) payload starts as an `upload_image` message: `{"type":"upload_image"`,
/// with any JSON whitespace between the tokens.
pub fn starts_as_upload(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix);
    let rest = text.trim_start().strip_prefix('{').map(str::trim_start);
    let rest = rest.and_then(|r| r.strip_prefix("\"type\"")).map(str::trim_start);
    let rest = rest.and_then(|r| r.strip_prefix(':')).map(str::trim_start);
    rest.is_some_and(|r| r.starts_with(UPLOAD_PREFIX))
}

impl<T> FrameGuard<T> {
    /// `max_frame`: the largest `upload_image` frame accepted at all.
    pub fn new(inner: T, max_frame: u64, budget: Budget, refusal: Refusal) -> Self {
        Self {
            inner,
            state: State::Header { buf: [0; 14], have: 0 },
            pending: Vec::new(),
            pending_at: 0,
            message_len: 0,
            max_frame,
            budget,
            held: None,
            refusal,
        }
    }

    fn refuse(&mut self, reason: String) -> io::Error {
        self.refusal.set(reason.clone());
        self.state = State::Refused;
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }

    /// What to do with a frame whose header is complete.
    fn on_header(&mut self, header_bytes: &[u8]) -> Result<(), io::Error> {
        let header = parse_header(header_bytes);
        if header.opcode >= 8 {
            // Control frames are at most 125 bytes; the library checks that.
            self.pass(header_bytes, header.len);
            return Ok(());
        }
        self.message_len = if header.opcode == 0 { self.message_len.saturating_add(header.len) } else { header.len };
        let total = self.message_len;
        if header.fin {
            self.message_len = 0;
        }
        if total <= SMALL_MESSAGE {
            self.pass(header_bytes, header.len);
            return Ok(());
        }
        if header.opcode != 1 || !header.fin {
            return Err(self.refuse(format!(
                "messages are limited to {SMALL_MESSAGE} bytes, except upload_image sent as one text frame"
            )));
        }
        if header.len > self.max_frame {
            return Err(self.refuse(format!("upload_image messages are limited to {} bytes", self.max_frame)));
        }
        let Some(mask) = header.mask else {
            return Err(self.refuse("client frames must be masked".into()));
        };
        self.state = State::Prefix { header: header_bytes.to_vec(), len: header.len, mask, prefix: Vec::new() };
        Ok(())
    }

    fn pass(&mut self, header_bytes: &[u8], len: u64) {
        self.pending.extend_from_slice(header_bytes);
        self.state = State::Payload { remaining: len };
    }

    /// A large frame's prefix is in: admit it to the budget or refuse it.
    fn on_prefix(&mut self, header: Vec<u8>, len: u64, mask: [u8; 4], prefix: Vec<u8>) -> Result<(), io::Error> {
        let clear: Vec<u8> = prefix.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        if !starts_as_upload(&clear) {
            return Err(self.refuse(format!(
                "messages other than upload_image are limited to {SMALL_MESSAGE} bytes (upload_image must start with its \"type\")"
            )));
        }
        // The frame and its parsed copy, or the parsed copy and the decoded photo.
        let kib = u32::try_from(len.saturating_mul(HELD_PER_BYTE).div_ceil(1024)).unwrap_or(u32::MAX);
        if kib > self.budget.total_kib {
            return Err(self.refuse(format!(
                "this message is larger than the server's upload memory of {} KiB",
                self.budget.total_kib
            )));
        }
        self.pending.extend_from_slice(&header);
        self.pending.extend_from_slice(&prefix);
        let remaining = len - prefix.len() as u64;
        let acquire = Box::pin(self.budget.kib.clone().acquire_many_owned(kib));
        self.state = State::Waiting { acquire, remaining };
        Ok(())
    }
}

/// Reads into `buf` from `inner` through a bounded scratch buffer; `Ok(0)` is end of stream.
fn read_some<T: AsyncRead + Unpin>(inner: &mut T, cx: &mut Context<'_>, into: &mut [u8]) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(into);
    ready!(Pin::new(inner).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pending_at < this.pending.len() {
                let n = (this.pending.len() - this.pending_at).min(out.remaining());
                out.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                if this.pending_at == this.pending.len() {
                    this.pending.clear();
                    this.pending_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                State::Refused => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "frame refused")));
                }
                State::Payload { remaining: 0 } => this.state = State::Header { buf: [0; 14], have: 0 },
                State::Payload { remaining } => {
                    let mut scratch = [0u8; 16 * 1024];
                    let limit = (*remaining).min(scratch.len() as u64).min(out.remaining() as u64) as usize;
                    let n = ready!(read_some(&mut this.inner, cx, &mut scratch[..limit]))?;
                    *remaining -= n as u64;
                    out.put_slice(&scratch[..n]);
                    return Poll::Ready(Ok(()));
                }
                State::Waiting { acquire, remaining } => {
                    let permit = ready!(acquire.as_mut().poll(cx))
                        .map_err(|_| io::Error::other("the server is shutting down"))?;
                    this.held = Some(permit);
                    this.state = State::Payload { remaining: *remaining };
                }
                State::Header { buf, have } => {
                    // The reader is back for another frame: the last large one has been handled.
                    this.held = None;
                    let need = header_len(&buf[..*have]);
                    if *have < need {
                        let n = ready!(read_some(&mut this.inner, cx, &mut buf[*have..need]))?;
                        if n == 0 {
                            // End of stream; hand over what there is so the library sees it.
                            this.pending.extend_from_slice(&buf[..*have]);
                            *have = 0;
                            if this.pending.is_empty() {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        *have += n;
                        continue;
                    }
                    let bytes = buf[..need].to_vec();
                    this.on_header(&bytes)?;
                }
                State::Prefix { header, len, mask, prefix } => {
                    let want = (*len).min(PREFIX as u64) as usize;
                    if prefix.len() < want {
                        let mut scratch = [0u8; PREFIX];
                        let n = ready!(read_some(&mut this.inner, cx, &mut scratch[..want - prefix.len()]))?;
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        prefix.extend_from_slice(&scratch[..n]);
                        continue;
                    }
                    let (header, len, mask, prefix) = (std::mem::take(header), *len, *mask, std::mem::take(prefix));
                    this.on_prefix(header, len, mask, prefix)?;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> FrameGuard<T> {
    /// After a refusal: sends the close frame itself (the library will not write after a read
    /// error), then reads and drops what the client still sends for up to `linger`, so the
    /// close frame is not lost to a reset of a socket with unread data.
    pub async fn close_refused(&mut self, code: u16, reason: &str, linger: std::time::Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let reason = reason.as_bytes();
        let reason = &reason[..reason.len().min(123)];
        let mut frame = vec![0x88, (2 + reason.len()) as u8];
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(reason);
        if self.inner.write_all(&frame).await.is_err() || self.inner.flush().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(linger, async {
            let mut sink = [0u8; 16 * 1024];
            while matches!(self.inner.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_through(bytes: Vec<u8>, budget: &Budget) -> (io::Result<Vec<u8>>, Refusal) {
        let refusal = Refusal::default();
        let mut guard = FrameGuard::new(std::io::Cursor::new(bytes), 1 << 20, budget.clone(), refusal.clone());
        let mut out = Vec::new();
        let read = guard.read_to_end(&mut out).await.map(|_| out);
        (read, refusal)
    }

    #[tokio::test]
    async fn small_frames_and_uploads_pass_unchanged() {
        let budget = Budget::new(1 << 20);
        let upload = format!("{{ \"type\" : \"upload_image\", \"data\": \"{}\"}}", "A".repeat(200_000));
        let mut stream = frame(true, 1, b"{\"type\":\"ping\"}");
        stream.extend(frame(false, 1, b"{\"type\":"));
        stream.extend(frame(true, 0, b"\"note\",\"text\":\"hi\"}"));
        stream.extend(frame(true, 9, b"ping"));
        stream.extend(frame(true, 1, upload.as_bytes()));
        stream.extend(frame(true, 1, b"{}"));
        let (read, refusal) = read_through(stream.clone(), &budget).await;
        assert_eq!(read.expect("read"), stream);
        assert!(refusal.reason().is_none());
        assert_eq!(budget.available_kib(), 1024, "the budget comes back when the next frame is read");
    }

    #[tokio::test]
    async fn large_frames_that_are_not_uploads_are_refused_from_the_header() {
        let budget = Budget::new(1 << 20);
        let big_note = format!("{{\"type\":\"note\",\"text\":\"{}\"}}", "x".repeat(100_000));
        let (read, refusal) = read_through(frame(true, 1, big_note.as_bytes()), &budget).await;
        assert!(read.is_err());
        assert!(refusal.reason().expect("reason").contains("limited to"));

        let binary = vec![0u8; 70_000];
        let (read, _) = read_through(frame(true, 2, &binary), &budget).await;
        assert!(read.is_err(), "large binary frames are refused");

        // 40 KiB fragments adding up past the limit.
        let mut fragmented = frame(false, 1, &[b' '; 40_000]);
        fragmented.extend(frame(true, 0, &[b' '; 40_000]));
        let (read, _) = read_through(fragmented, &budget).await;
        assert!(read.is_err(), "a fragmented message over the limit is refused");

        let too_big = format!("{{\"type\":\"upload_image\",\"data\":\"{}\"}}", "A".repeat(2 << 20));
        let (read, refusal) = read_through(frame(true, 1, too_big.as_bytes()), &budget).await;
        assert!(read.is_err());
        assert!(refusal.reason().expect("reason").contains("upload_image messages are limited"));
        assert_eq!(budget.available_kib(), 1024);
    }

    #[tokio::test]
    async fn a_large_frame_waits_for_budget() {
        let budget = Budget::new(600 * 1024);
        let held = budget.kib.clone().acquire_many_owned(300).await.expect("hold");
        let upload = format!("{{\"type\":\"upload_image\",\"data\":\"{}\"}}", "A".repeat(200_000));
        let reading = tokio::spawn({
            let budget = budget.clone();
            async move { read_through(frame(true, 1, upload.as_bytes()), &budget).await.0.map(|v| v.len()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!reading.is_finished(), "the frame waits while the budget is used");
        drop(held);
        assert!(reading.await.expect("task").expect("read") > 200_000);
    }

    #[test]
    fn uploads_are_recognised_by_their_first_key() {
        assert!(starts_as_upload(b"{\"type\":\"upload_image\",\"data\":\"..."));
        assert!(starts_as_upload(b" {\n  \"type\" :  \"upload_image\""));
        assert!(!starts_as_upload(b"{\"data\":\"...\",\"type\":\"upload_image\"}"));
        assert!(!starts_as_upload(b"{\"type\":\"note\""));
        assert!(!starts_as_upload(b"\xff\xfe"));
    }
}
