//! Admission at the accept loop: the core's [`Admission`] decides, this applies it to sockets.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use relay_core::admission::{Admission, AdmissionStats, Limits};
use smol::net::{TcpListener, TcpStream};

/// A service's admission state, shared by its accept loop and its connections.
#[derive(Debug)]
pub struct Gate {
    admission: Mutex<Admission>,
    /// Connections still in their handshake, to close when the core evicts one.
    handshaking: Mutex<HashMap<u64, TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gate {
    /// A gate with these limits.
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            admission: Mutex::new(Admission::new(limits)),
            handshaking: Mutex::new(HashMap::new()),
        })
    }

    /// Accepts the next connection the limits admit; refused ones are closed at once (no
    /// response, as GOST) and counted.
    pub async fn accept(
        self: &Arc<Gate>,
        listener: &TcpListener,
    ) -> io::Result<(TcpStream, SocketAddr, Ticket)> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let admitted = lock(&self.admission).admit(peer.ip(), Instant::now());
            let admitted = match admitted {
                Ok(a) => a,
                Err(refusal) => {
                    log::debug!("{peer}: not admitted: {refusal:?}");
                    continue;
                }
            };
            let mut handshaking = lock(&self.handshaking);
            if let Some(stream) = admitted.evict.and_then(|id| handshaking.remove(&id)) {
                log::debug!("evicting the oldest unfinished handshake for {peer}");
                let _ = stream.shutdown(Shutdown::Both);
            }
            handshaking.insert(admitted.id, stream.clone());
            let ticket = Ticket {
                gate: self.clone(),
                id: admitted.id,
            };
            return Ok((stream, peer, ticket));
        }
    }

    /// What the gate holds and refused so far.
    pub fn stats(&self) -> AdmissionStats {
        lock(&self.admission).stats()
    }
}

/// One admitted connection; dropping it tells the gate the connection is closed.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
}

impl Ticket {
    /// The connection finished its handshake: it can no longer be evicted.
    pub fn handshake_done(&self) {
        lock(&self.gate.handshaking).remove(&self.id);
        lock(&self.gate.admission).handshake_done(self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.gate.handshaking).remove(&self.id);
        lock(&self.gate.admission).closed(self.id);
    }
}
