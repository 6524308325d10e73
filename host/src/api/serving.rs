//! Serving threads. One acceptor takes every connection on the listening socket and
//! hands each, in turn, to one of the serving threads; a thread runs its own
//! current-thread runtime and serves its connections to the end. A request, its
//! connector call and the provider request that call makes (through the thread's own
//! connections, `runtime::egress::transport`) so stay on one thread: no cross-thread
//! wake-up per hop, and throughput grows with the threads. Handing connections out in
//! turn spreads them evenly (threads racing on one socket let the first awake take a
//! whole burst). A connector spinning in wasm yields every epoch tick, so it never
//! holds its thread from the other requests there.

use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A connection handed to a serving thread.
type Handoff = (std::net::TcpStream, SocketAddr);

/// What a serving thread accepts from: the connections the acceptor hands it.
struct Handed {
    connections: mpsc::UnboundedReceiver<Handoff>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.connections.recv().await else {
                // The acceptor has stopped: shutdown is under way.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    // Answers go out as soon as hyper writes them (each in one go).
                    let _ = stream.set_nodelay(true);
                    return (stream, peer);
                }
                Err(e) => tracing::warn!(error = %e, "a connection could not be taken over"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serves `router` on `listener` from this thread and `threads - 1` further ones until
/// `shutdown`; the other threads finish their connections before this returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let (mine, own) = mpsc::unbounded_channel();
    let mut handoffs = vec![mine];
    let mut serving = Vec::new();
    for index in 1..threads.max(1) {
        let (handoff, connections) = mpsc::unbounded_channel();
        handoffs.push(handoff);
        let handed = Handed { connections, local };
        serving.push(spawn_thread(
            index,
            handed,
            router.clone(),
            stopped.clone(),
        )?);
    }
    let acceptor = tokio::spawn(accept(listener, handoffs));
    let handed = Handed {
        connections: own,
        local,
    };
    let result = axum::serve(handed, router)
        .with_graceful_shutdown(shutdown)
        .await;
    acceptor.abort();
    let _ = stop.send(true);
    for thread in serving {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a serving thread failed"),
            Err(_) => tracing::error!("a serving thread panicked"),
        }
    }
    result
}

/// Takes every connection and hands them to the threads in turn.
async fn accept(listener: TcpListener, threads: Vec<mpsc::UnboundedSender<Handoff>>) {
    for turn in (0..threads.len()).cycle() {
        let (stream, peer) = loop {
            match listener.accept().await {
                Ok(accepted) => break accepted,
                // Out of descriptors, say: wait rather than spin, as axum does.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        match stream.into_std() {
            Ok(stream) => {
                let _ = threads[turn].send((stream, peer));
            }
            Err(e) => tracing::warn!(error = %e, "a connection could not be handed over"),
        }
    }
}

/// Starts serving thread `index` on its own runtime until `stop`.
fn spawn_thread(
    index: usize,
    handed: Handed,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("conduit-serve-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                axum::serve(handed, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await
            })
        })
}
