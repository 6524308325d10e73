//! The transport behind the `http` import: HTTP/1.1 (hyper's connection API, rustls for
//! `https`) over a pool of keep-alive connections per thread.
//!
//! A connection is driven by the call that sends on it: the guest's request is written,
//! and its answer read, by polling the connection from the call's own task, so a
//! provider request costs no hop to a connection task and no wake-up of another thread.
//! Between calls an idle connection is polled by nobody; taking it from the pool polls
//! it once, so one the provider closed meanwhile is dropped rather than used, and a
//! request it could not even start is sent again on a fresh connection (never one it
//! may have started: a provider is not asked twice to act).
//!
//! Each serving thread has its own runtime, so its pool holds only connections that
//! thread's runtime drives; an entry made under another runtime (a test's, say) is
//! dropped, not used. Idle connections are closed after [`IDLE_TIMEOUT`], and the pool
//! keeps at most [`MAX_IDLE_PER_TARGET`] per target and [`MAX_IDLE`] in all.

use super::{resolve, ResolveError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::runtime::Id as RuntimeId;
use tokio_util::either::Either;

/// How long an idle connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per target.
pub const MAX_IDLE_PER_TARGET: usize = 32;
/// Idle connections kept per thread.
pub const MAX_IDLE: usize = 256;

/// Where a request goes: its URL's scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    tls: bool,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    /// A lower-cased name, resolved through the guarded resolver.
    Name(String),
    /// An address literal, connected to as it is (the grant named it).
    Ip(IpAddr),
}

impl Target {
    /// The target of an `http` or `https` URL with a host.
    pub fn of(url: &url::Url) -> Option<Target> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = match url.host()? {
            url::Host::Domain(name) => Host::Name(name.to_ascii_lowercase()),
            url::Host::Ipv4(ip) => Host::Ip(ip.into()),
            url::Host::Ipv6(ip) => Host::Ip(ip.into()),
        };
        Some(Target {
            tls,
            host,
            port: url.port_or_known_default()?,
        })
    }

    /// The `Host` header's value: the host, with the port unless it is the scheme's.
    pub fn authority(&self) -> String {
        let host = match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A provider's whole answer.
#[derive(Debug)]
pub struct Exchange {
    /// The status code.
    pub status: u16,
    /// The headers, values as (lossy) text.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The name resolves only to addresses a connector may not reach.
    Denied(String),
    /// No connection, or the exchange broke (a fixed description: never the URL).
    Unreachable(&'static str),
    /// The body is over the cap (the cap in bytes).
    TooLarge(u64),
}

/// Sends `request` to `target` and reads the whole answer, its body capped at
/// `max_body` bytes. The caller bounds the time it may take.
pub async fn exchange(
    target: &Target,
    request: http::Request<Full<Bytes>>,
    max_body: u64,
) -> Result<Exchange, Failure> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Failure::Unreachable("no runtime to drive the connection"))?
        .id();
    let mut request = request;
    if let Some(mut pooled) = checkout(target, runtime) {
        match send(&mut pooled, request, max_body).await {
            Ok(exchange) => {
                checkin(target, pooled);
                return Ok(exchange);
            }
            // The connection closed before any of the request was written.
            Err(Sent::Unsent(unsent)) => request = *unsent,
            Err(Sent::Failed(failure)) => return Err(failure),
        }
    }
    let mut fresh = connect(target, runtime).await?;
    match send(&mut fresh, request, max_body).await {
        Ok(exchange) => {
            checkin(target, fresh);
            Ok(exchange)
        }
        Err(Sent::Unsent(_)) => Err(Failure::Unreachable("request failed")),
        Err(Sent::Failed(failure)) => Err(failure),
    }
}

/// A connection, and the handle requests are sent through.
struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    connection: Connection<TokioIo<Stream>, Full<Bytes>>,
    /// The runtime whose reactor the socket is registered with.
    runtime: RuntimeId,
    idle_since: Instant,
}

impl Pooled {
    /// Lets the connection take in what happened while nobody polled it (a close, an
    /// error, the end of the last answer); whether it can carry a request now.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        // Twice: the first poll may only finish reading the last answer, the second
        // then finds the connection idle and ready.
        for _ in 0..2 {
            if Pin::new(&mut self.connection).poll(&mut cx).is_ready() {
                return false;
            }
            if self.sender.is_ready() {
                return true;
            }
        }
        false
    }
}

enum Sent {
    /// Nothing of the request left: it may go out on another connection.
    Unsent(Box<http::Request<Full<Bytes>>>),
    Failed(Failure),
}

async fn send(
    pooled: &mut Pooled,
    request: http::Request<Full<Bytes>>,
    max_body: u64,
) -> Result<Exchange, Sent> {
    let answer = pooled.sender.try_send_request(request);
    let response = match drive(&mut pooled.connection, answer).await {
        Some(Ok(response)) => response,
        Some(Err(mut refused)) => {
            return Err(match refused.take_message() {
                Some(unsent) => Sent::Unsent(Box::new(unsent)),
                None => Sent::Failed(Failure::Unreachable("request failed")),
            })
        }
        None => return Err(Sent::Failed(Failure::Unreachable("request failed"))),
    };
    let (head, body) = response.into_parts();
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Err(Sent::Failed(Failure::TooLarge(max_body)));
    }
    let body = read_body(&mut pooled.connection, body, declared, max_body)
        .await
        .map_err(Sent::Failed)?;
    Ok(Exchange {
        status: head.status.as_u16(),
        headers: head
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    })
}

async fn read_body(
    connection: &mut Connection<TokioIo<Stream>, Full<Bytes>>,
    mut body: Incoming,
    declared: Option<u64>,
    max_body: u64,
) -> Result<Vec<u8>, Failure> {
    // A declared length is within the cap here; the buffer is sized for it once.
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let frame = match drive(connection, body.frame()).await {
            Some(Some(frame)) => frame,
            Some(None) => break,
            None => return Err(Failure::Unreachable("response body failed")),
        };
        let frame = frame.map_err(|_| Failure::Unreachable("response body failed"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() as u64 + data.len() as u64 > max_body {
                return Err(Failure::TooLarge(max_body));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Runs `work` (a request's answer, a frame of its body) while driving the connection
/// that produces it, on the caller's task; `None` if the connection ended first and
/// left the work unfinished (it never will be).
async fn drive<F: Future>(
    connection: &mut Connection<TokioIo<Stream>, Full<Bytes>>,
    work: F,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    poll_fn(|cx| {
        // The connection first: it writes the request and reads the answer, so the
        // work it completes is ready when polled next.
        let ended = Pin::new(&mut *connection).poll(cx).is_ready();
        match work.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if ended => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

#[derive(Default)]
struct Pool {
    idle: HashMap<Target, Vec<Pooled>>,
    count: usize,
}

/// An idle connection to `target` that can carry a request now, if the pool has one.
fn checkout(target: &Target, runtime: RuntimeId) -> Option<Pooled> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let Pool { idle, count } = &mut *pool;
        let list = idle.get_mut(target)?;
        let mut found = None;
        while let Some(mut pooled) = list.pop() {
            *count -= 1;
            let fresh = pooled.idle_since.elapsed() < IDLE_TIMEOUT;
            if pooled.runtime == runtime && fresh && pooled.usable() {
                found = Some(pooled);
                break;
            }
        }
        // No entry outlives its connections: a guest calling ever new hosts under a
        // wildcard grant leaves nothing behind.
        if list.is_empty() {
            idle.remove(target);
        }
        found
    })
}

/// Keeps a connection whose exchange is over for the next request to `target`.
fn checkin(target: &Target, mut pooled: Pooled) {
    if !pooled.usable() {
        return;
    }
    pooled.idle_since = Instant::now();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.count >= MAX_IDLE {
            pool.evict_expired();
            if pool.count >= MAX_IDLE {
                return;
            }
        }
        let list = pool.idle.entry(target.clone()).or_default();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(pooled);
            pool.count += 1;
        }
    });
}

impl Pool {
    fn evict_expired(&mut self) {
        let mut count = 0;
        self.idle.retain(|_, list| {
            list.retain(|pooled| pooled.idle_since.elapsed() < IDLE_TIMEOUT);
            count += list.len();
            !list.is_empty()
        });
        self.count = count;
    }
}

/// Opens a connection to `target`: its addresses (a name through the guarded
/// resolver) tried in turn, then TLS for `https`.
async fn connect(target: &Target, runtime: RuntimeId) -> Result<Pooled, Failure> {
    let addresses = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) => resolve(name, target.port).await.map_err(|e| match e {
            ResolveError::Private(private) => Failure::Denied(private.to_string()),
            ResolveError::Lookup(_) => Failure::Unreachable("connection failed"),
        })?,
    };
    let mut tcp = None;
    for address in addresses {
        if let Ok(stream) = TcpStream::connect(address).await {
            tcp = Some(stream);
            break;
        }
    }
    let tcp = tcp.ok_or(Failure::Unreachable("connection failed"))?;
    // A request goes out as soon as it is written, in one segment where it fits.
    let _ = tcp.set_nodelay(true);
    let stream = if target.tls {
        let name = match &target.host {
            Host::Name(name) => rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| Failure::Unreachable("connection failed"))?,
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let tls = tls_connector()
            .connect(name, tcp)
            .await
            .map_err(|_| Failure::Unreachable("connection failed"))?;
        Either::Right(Box::new(tls))
    } else {
        Either::Left(tcp)
    };
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Unreachable("connection failed"))?;
    Ok(Pooled {
        sender,
        connection,
        runtime,
        idle_since: Instant::now(),
    })
}

/// TLS as a browser does it: the webpki roots, HTTP/1.1 by ALPN.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// A connection's socket, plain or under TLS.
type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A provider on loopback answering each request with `answer(n)` (n counts
    /// requests from 0); it counts the connections it accepted.
    async fn provider(
        answer: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
    ) -> (Target, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, requests) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let answer = Arc::new(answer);
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let (answer, requests) = (answer.clone(), requests.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: a head without a body (the tests send GETs).
                        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        buffer.drain(..end + 4);
                        let reply = answer(requests.fetch_add(1, Ordering::SeqCst));
                        if socket.write_all(&reply).await.is_err() {
                            return;
                        }
                        if reply.windows(17).any(|w| w == b"connection: close") {
                            return;
                        }
                    }
                });
            }
        });
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        (Target::of(&url).unwrap(), connections)
    }

    fn get(target: &Target) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = "/v1/x".parse().unwrap();
        request
            .headers_mut()
            .insert(http::header::HOST, target.authority().parse().unwrap());
        request
    }

    fn ok(body: &str, extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn connections_are_reused_and_one_the_provider_closed_is_replaced() {
        // The third answer closes its connection: the fourth request needs a new one.
        let (target, connections) = provider(|n| {
            let extra = if n == 2 { "connection: close\r\n" } else { "" };
            ok(&format!("answer {n}"), extra)
        })
        .await;
        for n in 0..5 {
            let answer = exchange(&target, get(&target), 1024).await.unwrap();
            assert_eq!(
                (answer.status, answer.body),
                (200, format!("answer {n}").into_bytes())
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        let pooled = POOL.with(|pool| pool.borrow().idle.get(&target).map_or(0, Vec::len));
        assert_eq!(pooled, 1, "the live connection waits in the pool");
    }

    #[tokio::test]
    async fn a_target_whose_connections_are_all_taken_leaves_no_entry() {
        let (target, _) = provider(|n| ok(&format!("answer {n}"), "")).await;
        exchange(&target, get(&target), 1024).await.unwrap();
        let targets = || POOL.with(|pool| pool.borrow().idle.len());
        assert_eq!(targets(), 1);
        let runtime = tokio::runtime::Handle::current().id();
        let taken = checkout(&target, runtime).expect("the idle connection");
        assert_eq!(targets(), 0, "an emptied target is forgotten");
        checkin(&target, taken);
        assert_eq!(targets(), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_provider_is_never_used() {
        // The provider closes every connection shortly after answering, without saying
        // so: the connection is pooled alive, dead by the next request, which still
        // succeeds.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut chunk = [0u8; 4096];
                let _ = socket.read(&mut chunk).await;
                let _ = socket.write_all(&ok("bye", "")).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(socket);
            }
        });
        let target =
            Target::of(&url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap()).unwrap();
        for _ in 0..3 {
            let answer = exchange(&target, get(&target), 1024).await.unwrap();
            assert_eq!(answer.body, b"bye");
            // Let the close reach this side before the next request.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_declared_or_streamed() {
        let (target, _) = provider(|n| match n {
            0 => ok(&"x".repeat(2000), ""),
            _ => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n400\r\n"
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'y', 0x400))
                .chain(*b"\r\n400\r\n")
                .chain(std::iter::repeat_n(b'y', 0x400))
                .chain(*b"\r\n0\r\n\r\n")
                .collect(),
        })
        .await;
        let declared = exchange(&target, get(&target), 1024).await.unwrap_err();
        assert_eq!(declared, Failure::TooLarge(1024));
        let streamed = exchange(&target, get(&target), 1024).await.unwrap_err();
        assert_eq!(streamed, Failure::TooLarge(1024));
        // Within the cap, a chunked answer arrives whole.
        let (target, _) = provider(|_| {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                .to_vec()
        })
        .await;
        assert_eq!(
            exchange(&target, get(&target), 1024).await.unwrap().body,
            b"abcde"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_without_saying_where() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target =
            Target::of(&url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap()).unwrap();
        let failure = exchange(&target, get(&target), 1024).await.unwrap_err();
        assert_eq!(failure, Failure::Unreachable("connection failed"));
    }

    #[test]
    fn targets_and_their_host_header() {
        let target = |url: &str| Target::of(&url::Url::parse(url).unwrap());
        assert_eq!(
            target("https://API.Stripe.com/v1").unwrap().authority(),
            "api.stripe.com"
        );
        assert_eq!(
            target("http://127.0.0.1:8080/x").unwrap().authority(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            target("https://[::1]:8443/").unwrap().authority(),
            "[::1]:8443"
        );
        assert_eq!(
            target("http://example.com:80/").unwrap().authority(),
            "example.com"
        );
        assert!(target("ftp://example.com/").is_none());
        // The TLS configuration builds (the webpki roots, ring).
        let _ = tls_connector();
    }
}
