//! Embedding relay in a plain smol program: a relay server, a loopback echo target, and a client
//! that opens a tunnel through the server and checks the echo. Runs in well under a second and
//! stops by itself; loopback only.
//!
//! `cargo run -p relay-smol --example embed`

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use relay_core::Address;
use relay_core::auth::Credentials;
use relay_core::server::ServerConfig;
use relay_smol::{ClientOptions, ServeConfig};
use smol::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    smol::block_on(async {
        // A target that echoes one message.
        let target = TcpListener::bind("127.0.0.1:0").await?;
        let target_addr = target.local_addr()?;
        smol::spawn(async move {
            if let Ok((mut s, _)) = target.accept().await {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await {
                    let _ = s.write_all(&buf[..n]).await;
                }
            }
        })
        .detach();

        // A relay server with one user.
        let relay = TcpListener::bind("127.0.0.1:0").await?;
        let relay_addr = relay.local_addr()?;
        let config = ServerConfig {
            auth: Some(Arc::new(Credentials::single("user", "pass"))),
            ..ServerConfig::default()
        };
        smol::spawn(relay_smol::serve(relay, Arc::new(ServeConfig::new(config)))).detach();

        // A client: one tunnel to the target through the relay server.
        let options = ClientOptions {
            credentials: Some((b"user".to_vec(), b"pass".to_vec())),
            nodelay: false,
        };
        let to = target_addr.to_string();
        let target = Address::parse(&to).expect("a socket address parses");
        let mut tunnel =
            relay_smol::connect(TcpStream::connect(relay_addr).await?, &target, &options).await?;
        tunnel.write_all(b"hello through relay").await?;
        let mut back = [0u8; 19];
        tunnel.read_exact(&mut back).await?;
        assert_eq!(&back, b"hello through relay");
        println!(
            "echoed through {relay_addr}: {}",
            String::from_utf8_lossy(&back)
        );
        Ok(())
    })
}
