//! The server side of a SOCKS5 handshake (RFC 1928, RFC 1929), as a state machine over bytes.
//!
//! Feed [`Socks5Server::handle_input`] the bytes received and not yet consumed; each call
//! returns one [`Step`]: wait for more bytes, send a reply and go on, the finished request, or a
//! refusal (send the reply, then close). Credentials are checked by the [`Authenticator`] the
//! machine was built with, never by the parser.
//!
//! Once the caller has dialled the target (or opened the UDP relay), it answers with
//! [`encode_reply`]; relay statuses map to SOCKS5 reply codes with [`ReplyCode::from_status`].
//!
//! ```
//! use relay_core::auth::Credentials;
//! use relay_core::entry::socks5::{encode_reply, ReplyCode, Socks5Request, Socks5Server, Step};
//! use relay_core::Address;
//!
//! let creds = Credentials::single("u", "p");
//! let mut server = Socks5Server::new(&creds);
//! // Greeting offering no-auth and user/password: user/password is chosen.
//! assert_eq!(server.handle_input(&[5, 2, 0, 2]).unwrap(), Step::Reply { consumed: 4, reply: &[5, 2] });
//! assert_eq!(server.handle_input(&[1, 1, b'u', 1, b'p']).unwrap(), Step::Reply { consumed: 5, reply: &[1, 0] });
//! assert_eq!(server.user(), Some(&b"u"[..]));
//! // CONNECT example.com:443, in two pieces.
//! let req = [5, 1, 0, 3, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm', 1, 187];
//! assert_eq!(server.handle_input(&req[..6]).unwrap(), Step::NeedMore { needed: 18 });
//! let Step::Request { consumed: 18, request: Socks5Request::Connect { target } } = server.handle_input(&req).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(target, Address::parse("example.com:443").unwrap());
//! // Dialled: answer with the bound address.
//! let mut out = [0u8; 32];
//! let n = encode_reply(ReplyCode::SUCCEEDED, &Address::parse("10.0.0.2:40000").unwrap(), &mut out).unwrap();
//! assert_eq!(&out[..n], &[5, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40]);
//! ```

use core::fmt;

use crate::addr::{AddrError, Address};
use crate::auth::Authenticator;
use crate::codec::{Decoded, EncodeError, ensure_room};
use crate::wire::Status;

/// The SOCKS protocol version byte.
pub const VERSION: u8 = 0x05;
/// Method "no authentication required".
pub const METHOD_NO_AUTH: u8 = 0x00;
/// Method "username/password" (RFC 1929).
pub const METHOD_USER_PASS: u8 = 0x02;
/// Method reply "no acceptable methods".
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Version of the username/password subnegotiation.
pub const USER_PASS_VERSION: u8 = 0x01;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Command BIND (refused with [`ReplyCode::COMMAND_NOT_SUPPORTED`]).
pub const CMD_BIND: u8 = 0x02;
/// Command UDP ASSOCIATE.
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;
/// Length of a reply carrying the unspecified IPv4 address `0.0.0.0:0`, as failure replies do.
pub const FAILURE_REPLY_LEN: usize = 10;

/// A SOCKS5 reply code (the REP field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyCode(pub u8);

impl ReplyCode {
    /// `0x00` succeeded.
    pub const SUCCEEDED: ReplyCode = ReplyCode(0x00);
    /// `0x01` general SOCKS server failure.
    pub const GENERAL_FAILURE: ReplyCode = ReplyCode(0x01);
    /// `0x02` connection not allowed by ruleset.
    pub const NOT_ALLOWED: ReplyCode = ReplyCode(0x02);
    /// `0x03` network unreachable.
    pub const NETWORK_UNREACHABLE: ReplyCode = ReplyCode(0x03);
    /// `0x04` host unreachable.
    pub const HOST_UNREACHABLE: ReplyCode = ReplyCode(0x04);
    /// `0x05` connection refused.
    pub const CONNECTION_REFUSED: ReplyCode = ReplyCode(0x05);
    /// `0x06` TTL expired (used for timeouts).
    pub const TTL_EXPIRED: ReplyCode = ReplyCode(0x06);
    /// `0x07` command not supported.
    pub const COMMAND_NOT_SUPPORTED: ReplyCode = ReplyCode(0x07);
    /// `0x08` address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: ReplyCode = ReplyCode(0x08);

    /// The reply for a relay status from the next hop.
    ///
    /// | relay status | SOCKS5 reply |
    /// |---|---|
    /// | 0 OK | 0x00 succeeded |
    /// | 2 Unauthorized, 3 Forbidden | 0x02 not allowed |
    /// | 4 Timeout | 0x06 TTL expired |
    /// | 6 Host Unreachable | 0x04 host unreachable |
    /// | 7 Network Unreachable (GOST: any dial failure) | 0x03 network unreachable |
    /// | 1, 5, 8 and anything else | 0x01 general failure |
    ///
    /// ```
    /// use relay_core::entry::socks5::ReplyCode;
    /// use relay_core::wire::Status;
    /// assert_eq!(ReplyCode::from_status(Status::FORBIDDEN), ReplyCode::NOT_ALLOWED);
    /// ```
    pub fn from_status(status: Status) -> ReplyCode {
        match status {
            Status::OK => ReplyCode::SUCCEEDED,
            Status::UNAUTHORIZED | Status::FORBIDDEN => ReplyCode::NOT_ALLOWED,
            Status::TIMEOUT => ReplyCode::TTL_EXPIRED,
            Status::HOST_UNREACHABLE => ReplyCode::HOST_UNREACHABLE,
            Status::NETWORK_UNREACHABLE => ReplyCode::NETWORK_UNREACHABLE,
            _ => ReplyCode::GENERAL_FAILURE,
        }
    }
}

/// Length of the reply [`encode_reply`] writes for `bound`.
pub fn reply_len(bound: &Address<'_>) -> usize {
    3 + bound.encoded_len()
}

/// Writes `VER | REP | RSV | bound address` into `out`, returning the length written. Nothing is
/// written on error.
///
/// ```
/// use relay_core::entry::socks5::{encode_reply, ReplyCode};
/// use relay_core::Address;
/// let mut out = [0u8; 10];
/// let n = encode_reply(ReplyCode::HOST_UNREACHABLE, &Address::parse("0.0.0.0:0").unwrap(), &mut out).unwrap();
/// assert_eq!(&out[..n], &[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
/// ```
pub fn encode_reply(
    code: ReplyCode,
    bound: &Address<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    bound.check()?;
    let len = reply_len(bound);
    ensure_room(out, len)?;
    out[..3].copy_from_slice(&[VERSION, code.0, 0]);
    bound.encode(&mut out[3..])?;
    Ok(len)
}

/// A failure reply with the unspecified address `0.0.0.0:0`.
///
/// ```
/// use relay_core::entry::socks5::{failure_reply, ReplyCode};
/// assert_eq!(failure_reply(ReplyCode::COMMAND_NOT_SUPPORTED), [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
/// ```
pub fn failure_reply(code: ReplyCode) -> [u8; FAILURE_REPLY_LEN] {
    [VERSION, code.0, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// What the client asked for, once the handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Request<'b> {
    /// CONNECT to `target`.
    Connect {
        /// The destination.
        target: Address<'b>,
    },
    /// UDP ASSOCIATE. The address is only the client's hint of where it will send from (often
    /// `0.0.0.0:0`); it is not a destination.
    UdpAssociate {
        /// The address the client expects to send datagrams from.
        client_hint: Address<'b>,
    },
}

/// Why the handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Error {
    /// VER is not 5 in the greeting or the request: close without a reply.
    BadVersion,
    /// The username/password subnegotiation version is not 1: close without a reply.
    BadAuthVersion,
    /// None of the offered methods is acceptable (reply `05 FF`).
    NoAcceptableMethod,
    /// The credentials were rejected (reply `01 01`).
    AuthFailed,
    /// A command other than CONNECT and UDP ASSOCIATE (reply 0x07); BIND is one.
    CommandNotSupported(u8),
    /// ATYP is not 1, 3 or 4 (reply 0x08).
    AddressTypeNotSupported,
    /// The handshake is already over (finished or refused).
    Finished,
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks5Error::BadVersion => f.write_str("not SOCKS version 5"),
            Socks5Error::BadAuthVersion => {
                f.write_str("bad username/password subnegotiation version")
            }
            Socks5Error::NoAcceptableMethod => f.write_str("no acceptable authentication method"),
            Socks5Error::AuthFailed => f.write_str("authentication failed"),
            Socks5Error::CommandNotSupported(c) => write!(f, "command {c:#04x} not supported"),
            Socks5Error::AddressTypeNotSupported => f.write_str("address type not supported"),
            Socks5Error::Finished => f.write_str("handshake already over"),
        }
    }
}

impl std::error::Error for Socks5Error {}

/// One step of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'s, 'b> {
    /// The input holds only part of the next message; nothing was consumed. Call again once it
    /// holds at least `needed` bytes.
    NeedMore {
        /// Minimum input length before progress can be made (a lower bound).
        needed: usize,
    },
    /// Drop `consumed` bytes of input, send `reply`, and keep feeding (the rest of the input may
    /// already hold the next message).
    Reply {
        /// Bytes of input used.
        consumed: usize,
        /// Bytes to send to the client.
        reply: &'s [u8],
    },
    /// The handshake is over: drop `consumed` bytes, serve `request`, then answer with
    /// [`encode_reply`]. Bytes after `consumed` are the client's first payload.
    Request {
        /// Bytes of input used.
        consumed: usize,
        /// What the client asked for.
        request: Socks5Request<'b>,
    },
    /// The handshake is refused: send `reply`, then close.
    Refused {
        /// Bytes of input used.
        consumed: usize,
        /// Bytes to send before closing.
        reply: &'s [u8],
        /// Why.
        error: Socks5Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    Request,
    Over,
}

/// The SOCKS5 server handshake state machine.
///
/// Method choice follows RFC 1928, among the methods the client offers: when the
/// [`Authenticator`] requires authentication, only username/password (0x02); otherwise no-auth
/// (0x00), or username/password if that is all the client offers (the credentials are then still
/// checked by the authenticator). Nothing acceptable → `05 FF`.
pub struct Socks5Server<'c> {
    auth: &'c (dyn Authenticator + Sync),
    state: State,
    method: Option<u8>,
    reply: [u8; FAILURE_REPLY_LEN],
    user: [u8; 255],
    user_len: Option<u8>,
}

impl fmt::Debug for Socks5Server<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socks5Server")
            .field("state", &self.state)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<'c> Socks5Server<'c> {
    /// A machine waiting for the client's greeting.
    pub fn new(auth: &'c (dyn Authenticator + Sync)) -> Self {
        Socks5Server {
            auth,
            state: State::Greeting,
            method: None,
            reply: [0; FAILURE_REPLY_LEN],
            user: [0; 255],
            user_len: None,
        }
    }

    /// The method chosen, once the greeting has been handled.
    pub fn method(&self) -> Option<u8> {
        self.method
    }

    /// The user name that authenticated, if username/password was used and succeeded.
    pub fn user(&self) -> Option<&[u8]> {
        self.user_len.map(|n| &self.user[..n as usize])
    }

    fn reply<'b>(&mut self, consumed: usize, bytes: &[u8]) -> Step<'_, 'b> {
        self.reply[..bytes.len()].copy_from_slice(bytes);
        Step::Reply {
            consumed,
            reply: &self.reply[..bytes.len()],
        }
    }

    fn refuse<'b>(&mut self, consumed: usize, bytes: &[u8], error: Socks5Error) -> Step<'_, 'b> {
        self.state = State::Over;
        self.reply[..bytes.len()].copy_from_slice(bytes);
        Step::Refused {
            consumed,
            reply: &self.reply[..bytes.len()],
            error,
        }
    }

    /// Handles the input received and not yet consumed. See [`Step`] for what to do next.
    ///
    /// `Err` means a protocol violation after which the connection is closed without a reply
    /// (bad version), or a call after the handshake was over.
    pub fn handle_input<'b>(&mut self, buf: &'b [u8]) -> Result<Step<'_, 'b>, Socks5Error> {
        match self.state {
            State::Greeting => self.greeting(buf),
            State::Auth => self.subnegotiation(buf),
            State::Request => self.request(buf),
            State::Over => Err(Socks5Error::Finished),
        }
    }

    fn greeting<'b>(&mut self, buf: &'b [u8]) -> Result<Step<'_, 'b>, Socks5Error> {
        let Some(&ver) = buf.first() else {
            return Ok(Step::NeedMore { needed: 2 });
        };
        if ver != VERSION {
            self.state = State::Over;
            return Err(Socks5Error::BadVersion);
        }
        let Some(&n) = buf.get(1) else {
            return Ok(Step::NeedMore { needed: 2 });
        };
        let end = 2 + n as usize;
        let Some(methods) = buf.get(2..end) else {
            return Ok(Step::NeedMore { needed: end });
        };
        let offers = |m| methods.contains(&m);
        let chosen = if self.auth.required() {
            offers(METHOD_USER_PASS).then_some(METHOD_USER_PASS)
        } else if offers(METHOD_NO_AUTH) {
            Some(METHOD_NO_AUTH)
        } else {
            offers(METHOD_USER_PASS).then_some(METHOD_USER_PASS)
        };
        Ok(match chosen {
            None => self.refuse(
                end,
                &[VERSION, METHOD_NONE_ACCEPTABLE],
                Socks5Error::NoAcceptableMethod,
            ),
            Some(m) => {
                self.method = Some(m);
                self.state = if m == METHOD_USER_PASS {
                    State::Auth
                } else {
                    State::Request
                };
                self.reply(end, &[VERSION, m])
            }
        })
    }

    fn subnegotiation<'b>(&mut self, buf: &'b [u8]) -> Result<Step<'_, 'b>, Socks5Error> {
        let Some(&ver) = buf.first() else {
            return Ok(Step::NeedMore { needed: 3 });
        };
        if ver != USER_PASS_VERSION {
            self.state = State::Over;
            return Err(Socks5Error::BadAuthVersion);
        }
        let Some(&ulen) = buf.get(1) else {
            return Ok(Step::NeedMore { needed: 3 });
        };
        let ulen = ulen as usize;
        let Some(&plen) = buf.get(2 + ulen) else {
            return Ok(Step::NeedMore { needed: 3 + ulen });
        };
        let end = 3 + ulen + plen as usize;
        let Some(pass) = buf.get(3 + ulen..end) else {
            return Ok(Step::NeedMore { needed: end });
        };
        let user = &buf[2..2 + ulen];
        if !self.auth.verify(user, pass) {
            return Ok(self.refuse(end, &[USER_PASS_VERSION, 0x01], Socks5Error::AuthFailed));
        }
        self.user[..ulen].copy_from_slice(user);
        self.user_len = Some(ulen as u8);
        self.state = State::Request;
        Ok(self.reply(end, &[USER_PASS_VERSION, 0x00]))
    }

    fn request<'b>(&mut self, buf: &'b [u8]) -> Result<Step<'_, 'b>, Socks5Error> {
        let Some(&ver) = buf.first() else {
            return Ok(Step::NeedMore { needed: 7 });
        };
        if ver != VERSION {
            self.state = State::Over;
            return Err(Socks5Error::BadVersion);
        }
        let Some(&cmd) = buf.get(1) else {
            return Ok(Step::NeedMore { needed: 7 });
        };
        let rest = buf.get(3..).unwrap_or(&[]);
        let (addr, used) = match Address::decode(rest) {
            Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            Ok(Decoded::Partial { needed }) => return Ok(Step::NeedMore { needed: 3 + needed }),
            Err(AddrError::BadAddressType | AddrError::ShortBuffer) => {
                return Ok(self.refuse(
                    4,
                    &failure_reply(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED),
                    Socks5Error::AddressTypeNotSupported,
                ));
            }
        };
        let consumed = 3 + used;
        let request = match cmd {
            CMD_CONNECT => Socks5Request::Connect { target: addr },
            CMD_UDP_ASSOCIATE => Socks5Request::UdpAssociate { client_hint: addr },
            _ => {
                return Ok(self.refuse(
                    consumed,
                    &failure_reply(ReplyCode::COMMAND_NOT_SUPPORTED),
                    Socks5Error::CommandNotSupported(cmd),
                ));
            }
        };
        self.state = State::Over;
        Ok(Step::Request { consumed, request })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credentials;
    use proptest::prelude::*;

    /// What a whole handshake produced: replies sent, the final request (as bytes) or error.
    #[derive(Debug, PartialEq)]
    struct Transcript {
        replies: Vec<Vec<u8>>,
        end: Option<Result<(String, usize), Socks5Error>>,
    }

    /// Feeds `input` in chunks of the given sizes, the way a connection would.
    fn run(auth: &(dyn Authenticator + Sync), input: &[u8], splits: &[usize]) -> Transcript {
        let mut server = Socks5Server::new(auth);
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut replies = Vec::new();
        let mut chunks = splits.iter().copied().chain(core::iter::repeat(usize::MAX));
        let mut total_consumed = 0;
        loop {
            loop {
                let step = server.handle_input(&pending);
                match step {
                    Ok(Step::NeedMore { needed }) => {
                        assert!(needed > pending.len());
                        break;
                    }
                    Ok(Step::Reply { consumed, reply }) => {
                        replies.push(reply.to_vec());
                        total_consumed += consumed;
                        pending.drain(..consumed);
                    }
                    Ok(Step::Request { consumed, request }) => {
                        let text = format!("{request:?}");
                        total_consumed += consumed;
                        return Transcript {
                            replies,
                            end: Some(Ok((text, total_consumed))),
                        };
                    }
                    Ok(Step::Refused { reply, error, .. }) => {
                        replies.push(reply.to_vec());
                        return Transcript {
                            replies,
                            end: Some(Err(error)),
                        };
                    }
                    Err(e) => {
                        return Transcript {
                            replies,
                            end: Some(Err(e)),
                        };
                    }
                }
            }
            if fed == input.len() {
                return Transcript { replies, end: None };
            }
            let n = chunks.next().unwrap().max(1).min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }

    #[test]
    fn no_auth_connect_ipv4() {
        let creds = Credentials::new();
        let t = run(&creds, &[5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80, b'G'], &[]);
        assert_eq!(t.replies, vec![vec![5, 0]]);
        let (text, consumed) = t.end.unwrap().unwrap();
        assert_eq!(consumed, 13);
        assert!(text.contains("Connect"));
    }

    #[test]
    fn auth_required_but_not_offered() {
        let creds = Credentials::single("u", "p");
        let t = run(&creds, &[5, 1, 0], &[]);
        assert_eq!(t.replies, vec![vec![5, 0xFF]]);
        assert_eq!(t.end, Some(Err(Socks5Error::NoAcceptableMethod)));
        let t = run(&creds, &[5, 0], &[]);
        assert_eq!(t.end, Some(Err(Socks5Error::NoAcceptableMethod)));
    }

    #[test]
    fn no_auth_config_accepts_user_pass_only_client() {
        let creds = Credentials::new();
        let t = run(
            &creds,
            &[5, 1, 2, 1, 1, b'x', 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
            &[],
        );
        assert_eq!(t.replies, vec![vec![5, 2], vec![1, 0]]);
        assert!(t.end.unwrap().unwrap().0.contains("UdpAssociate"));
    }

    #[test]
    fn wrong_password() {
        let creds = Credentials::single("u", "p");
        let t = run(&creds, &[5, 1, 2, 1, 1, b'u', 1, b'q'], &[]);
        assert_eq!(t.replies, vec![vec![5, 2], vec![1, 1]]);
        assert_eq!(t.end, Some(Err(Socks5Error::AuthFailed)));
    }

    #[test]
    fn bind_and_unknown_commands_refused() {
        let creds = Credentials::new();
        for cmd in [CMD_BIND, 0x09] {
            let t = run(&creds, &[5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 80], &[]);
            assert_eq!(
                t.replies[1],
                failure_reply(ReplyCode::COMMAND_NOT_SUPPORTED)
            );
            assert_eq!(t.end, Some(Err(Socks5Error::CommandNotSupported(cmd))));
        }
    }

    #[test]
    fn bad_atyp_and_versions() {
        let creds = Credentials::new();
        let t = run(&creds, &[5, 1, 0, 5, 1, 0, 2], &[]);
        assert_eq!(
            t.replies[1],
            failure_reply(ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED)
        );
        assert_eq!(t.end, Some(Err(Socks5Error::AddressTypeNotSupported)));
        assert_eq!(
            run(&creds, &[4, 1], &[]).end,
            Some(Err(Socks5Error::BadVersion))
        );
        assert_eq!(
            run(&creds, &[5, 1, 0, 4], &[]).end,
            Some(Err(Socks5Error::BadVersion))
        );
        let c = Credentials::single("u", "");
        assert_eq!(
            run(&c, &[5, 1, 2, 5, 1, b'u', 0], &[]).end,
            Some(Err(Socks5Error::BadAuthVersion))
        );
    }

    #[test]
    fn finished_machine_refuses_more_input() {
        let creds = Credentials::new();
        let mut s = Socks5Server::new(&creds);
        assert!(matches!(s.handle_input(&[5, 1, 0]), Ok(Step::Reply { .. })));
        assert!(matches!(
            s.handle_input(&[5, 1, 0, 1, 0, 0, 0, 0, 0, 0]),
            Ok(Step::Request { .. })
        ));
        assert_eq!(s.handle_input(&[5]), Err(Socks5Error::Finished));
    }

    #[test]
    fn status_mapping_is_total() {
        for s in 0..=255u8 {
            let code = ReplyCode::from_status(Status(s));
            assert!(code.0 <= 8);
            assert_eq!(code == ReplyCode::SUCCEEDED, s == 0);
        }
    }

    #[test]
    fn closure_authenticator() {
        let check = |u: &[u8], p: &[u8]| u == b"a" && p == b"b";
        let t = run(&check, &[5, 1, 2, 1, 1, b'a', 1, b'b'], &[]);
        assert_eq!(t.replies, vec![vec![5, 2], vec![1, 0]]);
    }

    fn handshake() -> impl Strategy<Value = Vec<u8>> {
        let user = proptest::collection::vec(any::<u8>(), 0..20);
        let pass = proptest::collection::vec(any::<u8>(), 0..20);
        let domain = proptest::collection::vec(any::<u8>(), 0..40);
        (user, pass, domain, any::<u16>(), any::<bool>(), 0u8..4).prop_map(
            |(u, p, d, port, auth, cmd)| {
                let mut v = vec![5, 2, 0, 2];
                if auth {
                    v.extend_from_slice(&[1, u.len() as u8]);
                    v.extend_from_slice(&u);
                    v.push(p.len() as u8);
                    v.extend_from_slice(&p);
                } else {
                    v[1] = 1;
                    v.remove(3);
                }
                v.extend_from_slice(&[5, cmd, 0, 3, d.len() as u8]);
                v.extend_from_slice(&d);
                v.extend_from_slice(&port.to_be_bytes());
                v
            },
        )
    }

    proptest! {
        #[test]
        fn any_split_same_result(input in handshake(), splits in proptest::collection::vec(1usize..8, 0..40)) {
            let creds = Credentials::new();
            let whole = run(&creds, &input, &[]);
            prop_assert!(whole.end.is_some());
            prop_assert_eq!(run(&creds, &input, &splits), whole);
            let req_auth = Credentials::single("user", "");
            prop_assert_eq!(run(&req_auth, &input, &splits), run(&req_auth, &input, &[]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..80), splits in proptest::collection::vec(1usize..8, 0..20)) {
            let creds = Credentials::single("u", "");
            prop_assert_eq!(run(&creds, &input, &splits), run(&creds, &input, &[]));
        }
    }
}
