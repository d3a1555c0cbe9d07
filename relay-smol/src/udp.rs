//! Datagrams over a relay stream: the length framing of UDP CONNECT / forwarding and the
//! SOCKS5-style framing of UDP BIND / association, read and
//! written with buffers allocated once per tunnel.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use relay_core::Decoded;
use relay_core::buf::RecvBuf;
use relay_core::udp::{Datagram, LengthFrame, MAX_DATAGRAM};
use smol::net::UdpSocket;

use crate::pipe::Transferred;

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Writes length-framed datagrams, each in one write.
#[derive(Debug)]
pub struct FramedSend<W> {
    w: W,
    buf: Vec<u8>,
    prefix_len: usize,
}

impl<W: AsyncWrite + Unpin> FramedSend<W> {
    /// Frames datagrams onto `w`; `prefix` (a held relay response) goes in front of the first.
    pub fn new(w: W, prefix: &[u8]) -> Self {
        let mut buf = vec![0u8; prefix.len() + LengthFrame::HEADER_LEN + MAX_DATAGRAM];
        buf[..prefix.len()].copy_from_slice(prefix);
        FramedSend {
            w,
            buf,
            prefix_len: prefix.len(),
        }
    }

    /// Sends one datagram (at most 65535 bytes).
    pub async fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(invalid(relay_core::udp::UdpError::TooLarge));
        }
        self.payload_buf()[..datagram.len()].copy_from_slice(datagram);
        self.send_in_place(datagram.len()).await
    }

    /// Sends a datagram already placed at [`FramedSend::payload_buf`] (no copy).
    pub async fn send_in_place(&mut self, len: usize) -> io::Result<()> {
        let at = self.prefix_len;
        let header = LengthFrame::header(len).map_err(invalid)?;
        self.buf[at..at + LengthFrame::HEADER_LEN].copy_from_slice(&header);
        self.w
            .write_all(&self.buf[..at + LengthFrame::HEADER_LEN + len])
            .await?;
        self.w.flush().await?;
        // The prefix went out with this datagram: later ones start at the front.
        self.prefix_len = 0;
        Ok(())
    }

    /// Where to put the next datagram for [`FramedSend::send_in_place`].
    pub fn payload_buf(&mut self) -> &mut [u8] {
        let at = self.prefix_len + LengthFrame::HEADER_LEN;
        &mut self.buf[at..]
    }

    /// Closes the write side.
    pub async fn close(&mut self) -> io::Result<()> {
        self.w.close().await
    }
}

/// Reads length-framed datagrams.
#[derive(Debug)]
pub struct FramedRecv<R> {
    r: R,
    rb: RecvBuf,
    /// Length of the frame handed out by the previous `recv`, consumed at the next.
    last: usize,
}

impl<R: AsyncRead + Unpin> FramedRecv<R> {
    /// Reads frames from `r`, starting with `head` (bytes already read from it).
    pub fn new(r: R, head: &[u8]) -> Self {
        let mut rb = RecvBuf::with_capacity(LengthFrame::HEADER_LEN + MAX_DATAGRAM);
        rb.extend(head);
        FramedRecv { r, rb, last: 0 }
    }

    /// The next datagram, or `None` at the end of the stream (a truncated last frame is an
    /// error).
    pub async fn recv(&mut self) -> io::Result<Option<&[u8]>> {
        self.rb.consume(std::mem::take(&mut self.last));
        loop {
            if let Decoded::Complete { consumed, .. } =
                LengthFrame::decode(self.rb.data()).map_err(invalid)?
            {
                self.last = consumed;
                return Ok(Some(&self.rb.data()[LengthFrame::HEADER_LEN..consumed]));
            }
            let n = self.r.read(self.rb.unfilled()).await?;
            if n == 0 {
                return if self.rb.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.rb.filled(n);
        }
    }
}

/// Relays length-framed datagrams between a client stream and a connected UDP socket until the
/// client's stream ends: the server side of UDP CONNECT.
pub async fn stream_to_socket<R, W>(
    recv: &mut FramedRecv<R>,
    send: &mut FramedSend<W>,
    socket: &UdpSocket,
) -> io::Result<Transferred>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut up_bytes = 0u64;
    let mut down_bytes = 0u64;
    let up = async {
        while let Some(d) = recv.recv().await? {
            socket.send(d).await?;
            up_bytes += d.len() as u64;
        }
        io::Result::Ok(())
    };
    let down = async {
        loop {
            let n = socket.recv(send.payload_buf()).await?;
            send.send_in_place(n).await?;
            down_bytes += n as u64;
        }
    };
    // The tunnel lives as long as the client's stream (GOST has no idle timeout here).
    future::or(up, down).await?;
    Ok(Transferred {
        up: up_bytes,
        down: down_bytes,
    })
}

/// Longest SOCKS5-style stream frame: RSV, FRAG, the longest address, the longest datagram.
const MAX_ADDR_FRAME: usize = 3 + 1 + 1 + 255 + 2 + MAX_DATAGRAM;

/// Writes datagrams in the SOCKS5-style stream framing of UDP BIND / association
/// (`RSV = LEN | FRAG = 0xFF | ADDR | DATA`), each as one write: frames never interleave.
#[derive(Debug)]
pub struct DatagramSend<W> {
    w: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> DatagramSend<W> {
    /// Frames datagrams onto `w`.
    pub fn new(w: W) -> Self {
        DatagramSend {
            w,
            buf: vec![0u8; MAX_ADDR_FRAME],
        }
    }

    /// Sends one datagram. The core refuses empty and over-long ones
    /// ([`relay_core::udp::UdpError`], as `InvalidInput`); filter them with
    /// [`relay_core::bind::UdpRelay::to_stream`] first.
    pub async fn send(&mut self, datagram: &Datagram<'_>) -> io::Result<()> {
        let n = datagram
            .encode(&mut self.buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.w.write_all(&self.buf[..n]).await?;
        self.w.flush().await
    }

    /// Closes the write side.
    pub async fn close(&mut self) -> io::Result<()> {
        self.w.close().await
    }
}

/// Reads datagrams in the SOCKS5-style stream framing of UDP BIND / association.
#[derive(Debug)]
pub struct DatagramRecv<R> {
    r: R,
    rb: RecvBuf,
    last: usize,
}

impl<R: AsyncRead + Unpin> DatagramRecv<R> {
    /// Reads frames from `r`, starting with `head` (bytes already read from it).
    pub fn new(r: R, head: &[u8]) -> Self {
        let mut rb = RecvBuf::with_capacity(MAX_ADDR_FRAME);
        rb.extend(head);
        DatagramRecv { r, rb, last: 0 }
    }

    /// The next datagram, or `None` at the end of the stream. A bad frame (unknown address
    /// type) or a stream ending inside a frame is an error: the framing is lost.
    pub async fn recv(&mut self) -> io::Result<Option<Datagram<'_>>> {
        self.rb.consume(std::mem::take(&mut self.last));
        loop {
            if let Decoded::Complete { consumed, .. } =
                Datagram::decode(self.rb.data()).map_err(invalid)?
            {
                self.last = consumed;
                let data = self.rb.data();
                return match Datagram::decode(&data[..consumed]).map_err(invalid)? {
                    Decoded::Complete { value, .. } => Ok(Some(value)),
                    Decoded::Partial { .. } => Err(io::ErrorKind::InvalidData.into()),
                };
            }
            let n = self.r.read(self.rb.unfilled()).await?;
            if n == 0 {
                return if self.rb.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.rb.filled(n);
        }
    }
}
