//! Copying a tunnel's bytes both ways, with half-close and a prefix glued to the first write.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};

/// Size of each direction's copy buffer (GOST uses 32 KiB too).
pub const COPY_BUF: usize = 32 * 1024;

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
    let mut buf = vec![0u8; COPY_BUF + prefix.len()];
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut start = prefix.len();
    let mut total = 0u64;
    loop {
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
        to.write_all(&buf[..start + n]).await?;
        // A no-op on TCP; TLS and WebSocket channels may hold written bytes until flushed.
        to.flush().await?;
        total += n as u64;
        start = 0;
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
    let up = copy_half(a_read, b_write, &[]);
    let down = copy_half(b_read, a_write, downstream_prefix);
    // The first error ends both directions (the other future is dropped).
    let (up, down) = future::try_zip(up, down).await?;
    Ok(Transferred {
        up: up + upstream_head.len() as u64,
        down,
    })
}
