//! The relay client handshake, as GOST's relay connector builds it, without its stalls.
//!
//! A [`Client`] holds the encoded request and decides when it goes out:
//! - CONNECT with `nodelay=false` (GOST's default): no I/O at connect time; the request goes out
//!   glued to the first payload bytes ([`Client::take_request`] before the first write).
//! - CONNECT with `nodelay=true`, BIND and UDP association: the request goes out at once.
//!
//! Unlike GOST, the client **never waits** for the response before letting payload through: the
//! response is stripped from the front of the downstream bytes whenever it arrives
//! ([`Client::handle_response`]). GOST's connector with `nodelay=true` blocks in `Connect` until
//! the response comes, which hangs against a default GOST server (which holds its response until
//! the target speaks) when the client's protocol speaks first. Ours works with every server
//! setting and either side speaking first; a refusal still surfaces, as a typed error, on the
//! first downstream read.
//!
//! ```
//! use relay_core::client::{Client, ClientEvent};
//! use relay_core::server::Transport;
//! use relay_core::{Address, Decoded};
//!
//! let target = Address::parse(":22").unwrap();
//! let mut client = Client::connect(Transport::Tcp, &target, None, false).unwrap();
//! assert_eq!(client.poll_transmit(), None); // nodelay=false: nothing to send yet
//! // Before the first payload write, take the request and send both in one write.
//! assert_eq!(client.take_request(), &[1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 22]);
//! assert_eq!(client.take_request(), &[] as &[u8]); // only once
//!
//! // Downstream: the response, glued to the target's first bytes.
//! let down = [1, 0, 0, 0, b'S', b'S', b'H'];
//! let Decoded::Complete { value, consumed } = client.handle_response(&down).unwrap() else { panic!() };
//! assert_eq!(value, ClientEvent::Established { bound: None });
//! assert_eq!(&down[consumed..], b"SSH");
//! ```

use core::fmt;

use crate::addr::{Address, Host};
use crate::codec::{Decoded, EncodeError};
use crate::server::Transport;
use crate::target::Target;
use crate::wire::{Command, DecodeError, Feature, Features, Network, Request, Response, Status};

/// Longest request a client builds: network (5) + user auth (515) + address (262) + header.
const MAX_REQUEST: usize = 4 + 5 + 515 + 262;

/// What the server's response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Accepted. For BIND and UDP association, `bound` is the server's listening address.
    Established {
        /// The address in the response, if any.
        bound: Option<Target>,
    },
}

/// Why the handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The server refused with this status (GOST reports it as `"<code> <label>"`).
    Rejected(Status),
    /// The response could not be decoded.
    Malformed(DecodeError),
    /// The server closed before its response was whole.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Rejected(status) => write!(f, "relay server refused: {status}"),
            ClientError::Malformed(e) => write!(f, "bad relay response: {e}"),
            ClientError::Closed => {
                f.write_str("relay server closed the connection without a response")
            }
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Response,
    Done,
    Failed(ClientError),
}

/// The client side of one relay connection's handshake.
pub struct Client {
    request: [u8; MAX_REQUEST],
    request_len: usize,
    sent: bool,
    immediate: bool,
    progress: Progress,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("request", &&self.request[..self.request_len])
            .field("sent", &self.sent)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Client {
    /// A CONNECT to `target`, exactly as GOST builds it: CMD `0x01`, or `0x81` plus a UDP network
    /// feature for UDP; features in the order network, user auth, address; `:port` as a
    /// zero-length domain. With `nodelay` the request goes out at once, else with the first
    /// payload.
    pub fn connect(
        transport: Transport,
        target: &Address<'_>,
        credentials: Option<(&[u8], &[u8])>,
        nodelay: bool,
    ) -> Result<Client, EncodeError> {
        let (cmd, network) = match transport {
            Transport::Tcp => (Command::CONNECT, None),
            Transport::Udp => (Command::CONNECT_UDP, Some(Network::UDP)),
        };
        Client::build(cmd, network, credentials, Some(target), nodelay, false)
    }

    /// A BIND (remote forwarding) asking the server to listen on `addr`: CMD `0x02` (TCP, then an
    /// smux session) or `0x82` (UDP, then SOCKS5-style datagrams), features user auth, network,
    /// address, as GOST ≤ v3.2.6 sends them. Sent at once. A port-only `addr` (`:2222`) goes out
    /// as a zero-length domain, which every GOST server accepts.
    pub fn bind(
        transport: Transport,
        addr: &Address<'_>,
        credentials: Option<(&[u8], &[u8])>,
    ) -> Result<Client, EncodeError> {
        let (cmd, network) = match transport {
            Transport::Tcp => (Command::BIND, Network::TCP),
            Transport::Udp => (Command::BIND_UDP, Network::UDP),
        };
        Client::build(cmd, Some(network), credentials, Some(addr), true, true)
    }

    /// A UDP association: a UDP BIND of `0.0.0.0:0` (what go-gost/x ≥ v0.12.5 sends). Sent at once;
    /// the server needs `bind=true`.
    pub fn associate(credentials: Option<(&[u8], &[u8])>) -> Result<Client, EncodeError> {
        let any = Address {
            host: Host::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
        };
        Client::bind(Transport::Udp, &any, credentials)
    }

    fn build(
        cmd: Command,
        network: Option<Network>,
        credentials: Option<(&[u8], &[u8])>,
        addr: Option<&Address<'_>>,
        immediate: bool,
        auth_first: bool,
    ) -> Result<Client, EncodeError> {
        let auth = credentials
            .filter(|(user, _)| !user.is_empty())
            .map(|(username, password)| Feature::UserAuth { username, password });
        let network = network.map(Feature::Network);
        // CONNECT: network, auth, address. BIND: auth, network, address (GOST's orders).
        let (first, second) = if auth_first {
            (auth, network)
        } else {
            (network, auth)
        };
        let mut list = [Feature::Network(Network::TCP); 3];
        let mut n = 0;
        for f in [first, second, addr.map(|a| Feature::Addr(*a))]
            .into_iter()
            .flatten()
        {
            list[n] = f;
            n += 1;
        }
        let request = Request {
            cmd,
            features: Features::new(&list[..n]),
        };
        let mut buf = [0u8; MAX_REQUEST];
        let request_len = request.encode(&mut buf)?;
        Ok(Client {
            request: buf,
            request_len,
            sent: false,
            immediate,
            progress: Progress::Response,
        })
    }

    /// The request, if it must go out now (nodelay CONNECT, BIND, association). Returned once.
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        if self.immediate && !self.sent {
            Some(self.take_request())
        } else {
            None
        }
    }

    /// The request if it has not gone out yet, to be written in front of the first payload in
    /// the same write (GOST's lazy request); empty afterwards.
    pub fn take_request(&mut self) -> &[u8] {
        if self.sent {
            return &[];
        }
        self.sent = true;
        &self.request[..self.request_len]
    }

    /// True when the request goes out at connect time (nodelay CONNECT, BIND, association)
    /// rather than with the first payload.
    pub fn is_immediate(&self) -> bool {
        self.immediate
    }

    /// The whole request, whether sent or not (for logs and tests).
    pub fn request(&self) -> &[u8] {
        &self.request[..self.request_len]
    }

    /// Feeds the first downstream bytes. `Partial` until the response is whole; then the event
    /// and how many bytes it occupied (the rest is payload). A refusal is an error, and stays one
    /// on later calls.
    pub fn handle_response(&mut self, buf: &[u8]) -> Result<Decoded<ClientEvent>, ClientError> {
        if let Progress::Failed(e) = self.progress {
            return Err(e);
        }
        let decoded = Response::decode(buf).map_err(|e| self.fail(ClientError::Malformed(e)))?;
        let (value, consumed) = match decoded {
            Decoded::Complete { value, consumed } => (value, consumed),
            Decoded::Partial { needed } => return Ok(Decoded::Partial { needed }),
        };
        if value.status != Status::OK {
            return Err(self.fail(ClientError::Rejected(value.status)));
        }
        self.progress = Progress::Done;
        let bound = value.features.addr().map(|a| Target::from_address(&a));
        Ok(Decoded::Complete {
            value: ClientEvent::Established { bound },
            consumed,
        })
    }

    /// The downstream ended. Before an OK response that is an error ([`ClientError::Closed`], or
    /// the refusal already seen); after one it is the normal end of the tunnel (`None`).
    pub fn handle_eof(&mut self) -> Option<ClientError> {
        match self.progress {
            Progress::Done => None,
            Progress::Failed(e) => Some(e),
            Progress::Response => Some(self.fail(ClientError::Closed)),
        }
    }

    /// True once an OK response has been read.
    pub fn is_established(&self) -> bool {
        self.progress == Progress::Done
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.progress = Progress::Failed(e);
        e
    }
}
