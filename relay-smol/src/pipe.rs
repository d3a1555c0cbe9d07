//! Copying a tunnel's bytes both ways, with half-close and a prefix glued to the first write.

use std::future::Future;
use std::io;
use std::task::Poll;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, future};
use smol::Timer;

/// Size of each direction's copy buffer once bulk data flows (GOST uses 32 KiB too).
pub const COPY_BUF: usize = 32 * 1024;

/// Size of the buffer a direction starts with, kept in the task (no allocation).
const FIRST_BUF: usize = 2 * 1024;

/// How long the other direction of a tunnel may run once one direction has ended.
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Which direction of a tunnel ended first, and how.
enum Ended {
    Up(io::Result<u64>),
    Down(io::Result<u64>),
}

/// Bytes moved by a [`pipe`], each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// From the first stream to the second (client → target on a server).
    pub up: u64,
    /// From the second stream to the first.
    pub down: u64,
}

/// Copies `from` into `to` until end of stream, then shuts `to`'s write side. `prefix` goes in
/// front of the first bytes written, in the same write; it is dropped if `from` ends first.
/// The buffer is allocated once per direction.
pub async fn copy_half(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    prefix: &[u8],
) -> io::Result<u64> {
    // Idle and interactive tunnels read into a small buffer inside the task; the full-size one
    // is allocated (once) only when a read fills the small one, i.e. when bulk data flows.
    let mut small = [0u8; FIRST_BUF];
    let mut big: Vec<u8> = Vec::new();
    let mut prefix = prefix;
    let mut total = 0u64;
    loop {
        let buf: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
        // The prefix goes in front of the data in the same write when it fits (relay responses
        // always do); a longer one goes out on its own just before.
        let glued = prefix.len() <= buf.len() / 2;
        let start = if glued { prefix.len() } else { 0 };
        buf[..start].copy_from_slice(&prefix[..start]);
        let n = match from.read(&mut buf[start..]).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => {
                let _ = to.close().await;
                return Err(e);
            }
        };
        if n == 0 {
            break;
        }
        if !glued {
            to.write_all(prefix).await?;
        }
        to.write_all(&buf[..start + n]).await?;
        // A no-op on TCP; TLS and WebSocket channels may hold written bytes until flushed.
        to.flush().await?;
        total += n as u64;
        let filled = start + n == buf.len();
        prefix = &[];
        if filled && big.is_empty() {
            big = vec![0u8; COPY_BUF];
        }
    }
    to.close().await?;
    Ok(total)
}

/// Runs both directions of a tunnel to completion: `a` is the client side, `b` the target side.
/// `upstream_head` (payload that arrived with the handshake) is written to `b` first;
/// `downstream_prefix` goes in front of the first bytes to `a`. Each side's end of stream is
/// passed on as a half-close, so the other direction can finish; an error ends both.
pub async fn pipe<AR, AW, BR, BW>(
    (a_read, a_write): (AR, AW),
    (b_read, mut b_write): (BR, BW),
    upstream_head: &[u8],
    downstream_prefix: &[u8],
) -> io::Result<Transferred>
where
    AR: AsyncRead + Unpin,
    AW: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    if !upstream_head.is_empty() {
        b_write.write_all(upstream_head).await?;
        b_write.flush().await?;
    }
    let mut up = std::pin::pin!(copy_half(a_read, b_write, &[]));
    let mut down = std::pin::pin!(copy_half(b_read, a_write, downstream_prefix));
    // Both directions run until one of them ends.
    let first = future::poll_fn(|cx| {
        if let Poll::Ready(r) = up.as_mut().poll(cx) {
            return Poll::Ready(Ended::Up(r));
        }
        down.as_mut().poll(cx).map(Ended::Down)
    })
    .await;
    // An error ends both directions; an end of stream leaves the other direction
    // `HALF_CLOSE_LINGER` to finish (GOST gives it 10 s too), so a peer that neither sends nor
    // closes cannot hold the tunnel open forever.
    let linger = async {
        Timer::after(HALF_CLOSE_LINGER).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "half-closed tunnel lingered too long",
        ))
    };
    let (up, down) = match first {
        Ended::Up(u) => (u?, down.or(linger).await?),
        Ended::Down(d) => {
            let d = d?;
            (up.or(linger).await?, d)
        }
    };
    Ok(Transferred {
        up: up + upstream_head.len() as u64,
        down,
    })
}
