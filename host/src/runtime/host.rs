//! The host side of one guest call: the store's state, the `http` and `log` imports,
//! and guest stdout/stderr turned into tracing lines. Only WIT glue and the state it
//! needs live here; the egress policy is in [`super::egress`].

use super::bindings::conduit::connector::{http, log, types};
use super::egress::{self, AllowedHosts};
use crate::audit::Redactor;
use crate::domain::OutboundRecord;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Longest guest log line kept; the rest is cut.
const MAX_LOG_LINE: usize = 2048;
/// Guest stdout + stderr kept per call; the rest is dropped.
const MAX_OUTPUT_PER_CALL: usize = 64 * 1024;
/// Timeout of an outbound request that names none (still capped by the deadline).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A plugin's way out: its allowed hosts and the shared client.
pub struct Egress {
    slug: Arc<str>,
    allowed: AllowedHosts,
    client: reqwest::Client,
    max_response_bytes: u64,
}

impl Egress {
    pub fn new(
        slug: &str,
        allowed: AllowedHosts,
        client: reqwest::Client,
        max_response_bytes: u64,
    ) -> Self {
        Egress {
            slug: slug.into(),
            allowed,
            client,
            max_response_bytes,
        }
    }
}

/// Tracks a store's memory against the plugin's limit and remembers a refusal, so the
/// resulting trap can be reported as `plugin_memory`.
pub struct MemoryLimiter {
    limit: usize,
    pub exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's store.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    egress: Arc<Egress>,
    redactor: Redactor,
    deadline: Instant,
    pub outbound: Vec<OutboundRecord>,
}

impl CallState {
    pub fn new(
        egress: Arc<Egress>,
        redactor: Redactor,
        memory_bytes: usize,
        deadline: Instant,
    ) -> Self {
        let budget = Arc::new(AtomicUsize::new(MAX_OUTPUT_PER_CALL));
        let output = |stream| GuestOutput {
            slug: egress.slug.clone(),
            stream,
            redactor: redactor.clone(),
            budget: budget.clone(),
        };
        // No preopens, no environment, no arguments, no sockets: a connector sees
        // nothing of the machine it runs on.
        let wasi = WasiCtxBuilder::new()
            .stdout(output("stdout"))
            .stderr(output("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: memory_bytes,
                exceeded: false,
            },
            egress,
            redactor,
            deadline,
            outbound: Vec::new(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) {
        let message = self.redactor.redact(truncate(&message, MAX_LOG_LINE));
        let plugin = &*self.egress.slug;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl http::Host for CallState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let started = Instant::now();
        let method = request.method.clone();
        let url = redact_query(&request.url);
        let result = send(&self.egress, request, self.deadline).await;
        self.outbound.push(OutboundRecord {
            method,
            url: self.redactor.redact(&url),
            status: result.as_ref().ok().map(|r| r.status),
            error: result
                .as_ref()
                .err()
                .map(|e| self.redactor.redact(&describe(e))),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        result
    }
}

/// Performs one outbound request under the plugin's policy.
async fn send(
    egress: &Egress,
    request: http::Request,
    deadline: Instant,
) -> Result<http::Response, http::HttpError> {
    use http::HttpError;
    let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .ok()
        .filter(|m| {
            matches!(
                m.as_str(),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
            )
        })
        .ok_or_else(|| HttpError::Invalid(format!("method `{}` is not allowed", request.method)))?;
    let url = reqwest::Url::parse(&request.url)
        .map_err(|e| HttpError::Invalid(format!("bad URL: {e}")))?;
    egress.allowed.check(&url).map_err(HttpError::Denied)?;

    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &request.headers {
        if egress::is_forbidden_header(name) {
            continue;
        }
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("bad header name `{name}`")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| HttpError::Invalid(format!("bad value for header `{name}`")))?;
        headers.append(name, value);
    }

    let remaining = deadline.saturating_duration_since(Instant::now());
    let asked = request
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let timeout = asked.min(remaining);
    if timeout.is_zero() {
        return Err(HttpError::Timeout);
    }

    let response = egress
        .client
        .request(method, url)
        .headers(headers)
        .body(request.body)
        .timeout(timeout)
        .send()
        .await
        .map_err(transport_error)?;
    if response
        .content_length()
        .is_some_and(|len| len > egress.max_response_bytes)
    {
        return Err(HttpError::TooLarge(egress.max_response_bytes));
    }
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() as u64 + chunk.len() as u64 > egress.max_response_bytes {
            return Err(HttpError::TooLarge(egress.max_response_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(http::Response {
        status,
        headers,
        body,
    })
}

/// Maps a transport failure without echoing the URL (which may carry secrets).
fn transport_error(e: reqwest::Error) -> http::HttpError {
    if e.is_timeout() {
        return http::HttpError::Timeout;
    }
    if let Some(reason) = egress::is_private_address_refusal(&e) {
        return http::HttpError::Denied(reason);
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_body() {
        "response body failed"
    } else {
        "request failed"
    };
    http::HttpError::Unreachable(kind.into())
}

fn describe(e: &http::HttpError) -> String {
    match e {
        http::HttpError::Denied(m) => format!("denied: {m}"),
        http::HttpError::Timeout => "timeout".into(),
        http::HttpError::Unreachable(m) => format!("unreachable: {m}"),
        http::HttpError::TooLarge(cap) => format!("too large: over {cap} bytes"),
        http::HttpError::RateLimited(ms) => format!("rate limited: retry in {ms} ms"),
        http::HttpError::Invalid(m) => format!("invalid: {m}"),
    }
}

/// Keeps query parameter names and drops their values, which may be tokens.
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let names: Vec<String> = query
                .split('&')
                .map(|pair| format!("{}=<redacted>", pair.split('=').next().unwrap_or("")))
                .collect();
            format!("{base}?{}", names.join("&"))
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Guest stdout or stderr: complete lines become tracing events tagged with the plugin,
/// redacted, within a per-call byte budget. Writes always succeed so a chatty guest
/// does not trap on a full pipe.
#[derive(Clone)]
struct GuestOutput {
    slug: Arc<str>,
    stream: &'static str,
    redactor: Redactor,
    budget: Arc<AtomicUsize>,
}

impl GuestOutput {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let wanted = text.len();
        let granted = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(wanted))
            })
            .unwrap_or(0);
        if granted == 0 {
            return;
        }
        let text = self
            .redactor
            .redact(truncate(text, granted.min(MAX_LOG_LINE)));
        tracing::info!(plugin = &*self.slug, stream = self.stream, "{text}");
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    output: GuestOutput,
    pending: Vec<u8>,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.output.emit(&line);
        }
        if self.pending.len() > MAX_LOG_LINE {
            let line = std::mem::take(&mut self.pending);
            self.output.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let line = std::mem::take(&mut self.pending);
        self.output.emit(&line);
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.pending);
        self.output.emit(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted() {
        assert_eq!(
            redact_query("https://x.com/a?key=sk_1&b=2"),
            "https://x.com/a?key=<redacted>&b=<redacted>"
        );
        assert_eq!(redact_query("https://x.com/a"), "https://x.com/a");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
