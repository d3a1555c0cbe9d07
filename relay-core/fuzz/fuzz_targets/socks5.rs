#![no_main]
//! Arbitrary bytes never panic the SOCKS5 and SOCKS4 handshakes, whatever the authenticator, and
//! every step stays within its input.
use libfuzzer_sys::fuzz_target;
use relay_core::auth::Credentials;
use relay_core::entry::socks4::Socks4Request;
use relay_core::entry::socks5::{Socks5Server, Step};

fuzz_target!(|data: &[u8]| {
    let _ = Socks4Request::decode(data);
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let creds = if mode & 1 == 0 {
        Credentials::new()
    } else {
        Credentials::single("user", if mode & 2 == 0 { "" } else { "pass" })
    };
    let mut server = Socks5Server::new(&creds);
    let mut rest = input;
    loop {
        match server.handle_input(rest) {
            Ok(Step::NeedMore { needed }) => {
                assert!(needed > rest.len());
                return;
            }
            Ok(Step::Reply { consumed, reply }) => {
                assert!(consumed <= rest.len() && !reply.is_empty());
                rest = &rest[consumed..];
            }
            Ok(Step::Request { consumed, .. }) | Ok(Step::Refused { consumed, .. }) => {
                assert!(consumed <= rest.len());
                return;
            }
            Err(_) => return,
        }
    }
});
