//! A TCP relay in front of a real server that a test can turn into an outage: while it
//! passes, every byte goes through unchanged (SigV4 still verifies: the gateway signs
//! for the relay's address, which is the `Host` the server reads); switched to a fault,
//! the connections it holds are cut and new ones are reset or answered with a 5xx. The
//! real S3 server keeps its bytes and comes back when the relay passes again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relays to the server behind it.
    Pass,
    /// Closes each connection as soon as it is accepted (a store that is down).
    Reset,
    /// Reads each request head and answers this status with an S3 error document.
    Fail(u16),
}

pub struct Relay {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Requests answered with a fault (read heads in `Fail`, connections in `Reset`).
    faulted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts passing to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let faulted = Arc::new(AtomicUsize::new(0));
        let f = faulted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(client, target, mode_rx.clone(), f.clone()));
            }
        });
        Relay {
            addr,
            mode,
            faulted,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches every connection, held or new, to `mode`.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Requests (or connections) met with a fault so far.
    pub fn faulted(&self) -> usize {
        self.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    faulted: Arc<AtomicUsize>,
) {
    let now = *mode.borrow_and_update();
    match now {
        Mode::Reset => {
            faulted.fetch_add(1, Ordering::SeqCst);
            reset(client);
        }
        Mode::Fail(status) => fail(client, status, &faulted).await,
        Mode::Pass => {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            // Relays until either side closes or the mode changes: a held connection is
            // cut as a real outage cuts it.
            let cut = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                _ = mode.changed() => true,
            };
            if cut {
                reset(client);
            }
        }
    }
}

/// Closes with a reset (RST), as a store that went away does.
fn reset(client: TcpStream) {
    // A zero linger never blocks on drop (the deprecation is about a non-zero one).
    #[allow(deprecated)]
    let _ = client.set_linger(Some(std::time::Duration::ZERO));
    drop(client);
}

/// Answers each request head on the connection with `status`, then closes.
async fn fail(mut client: TcpStream, status: u16, faulted: &AtomicUsize) {
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    faulted.fetch_add(1, Ordering::SeqCst);
    let code = if status == 403 {
        "AccessDenied"
    } else {
        "ServiceUnavailable"
    };
    let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
    let answer = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}
