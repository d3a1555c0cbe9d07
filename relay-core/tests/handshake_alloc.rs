//! The client and server handshakes allocate nothing: a counting global allocator sees zero
//! allocations from building a request to the data phase on both sides.

use std::sync::Arc;
use std::time::Instant;

use relay_core::client::Client;
use relay_core::server::{Server, ServerConfig, ServerOutput, Transport};
use relay_core::{Address, Decoded};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn handshakes_allocate_nothing() {
    let config = Arc::new(ServerConfig::default());
    let now = Instant::now();
    let (n, ()) = allocations(|| {
        let target = Address::parse("example.com:443").unwrap();
        let mut client =
            Client::connect(Transport::Tcp, &target, Some((b"user", b"pass")), false).unwrap();
        let mut wire = [0u8; 1024];
        let req = client.take_request();
        let len = req.len();
        wire[..len].copy_from_slice(req);
        wire[len..len + 5].copy_from_slice(b"hello");

        let mut server = Server::new(config.clone(), now);
        let used = server.handle_input(&wire[..len + 5], now);
        assert_eq!(used, len);
        assert!(matches!(server.poll_output(), Some(ServerOutput::Dial(_))));
        server.dial_done(Ok(()), now);
        let Some(ServerOutput::Established(est)) = server.poll_output() else {
            panic!()
        };
        let relay_core::server::Established::Tcp { downstream_prefix } = est else {
            panic!()
        };

        let mut down = [0u8; 16];
        let p = downstream_prefix.as_slice();
        down[..p.len()].copy_from_slice(p);
        let Ok(Decoded::Complete { consumed, .. }) = client.handle_response(&down[..p.len() + 3])
        else {
            panic!()
        };
        assert_eq!(consumed, 4);
    });
    assert_eq!(n, 0, "handshake allocations");
}
