//! The host side of one guest call: the store's state and memory limiter, the `http`
//! and `log` imports with the redaction of what they record (headers, bodies, query
//! strings), and guest stdout/stderr turned into tracing lines. The egress policy
//! (which hosts, which addresses) is in [`super::egress`].

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

/// What one guest call may cause the host to hold: each bound refuses the request (or
/// stops recording) instead of growing host memory with what a guest sends.
pub mod bounds {
    /// Longest request URL.
    pub const MAX_URL_BYTES: usize = 8 * 1024;
    /// Most request headers.
    pub const MAX_HEADERS: usize = 64;
    /// Request header names and values together.
    pub const MAX_HEADER_BYTES: usize = 32 * 1024;
    /// Largest request body (a 25 MB e-mail with attachments fits).
    pub const MAX_REQUEST_BODY_BYTES: usize = 32 * 1024 * 1024;
    /// Outbound requests one call may make.
    pub const MAX_REQUESTS_PER_CALL: usize = 64;
    /// Outbound records kept for the audit per call, and their bytes together.
    pub const MAX_RECORDS: usize = 32;
    /// See [`MAX_RECORDS`].
    pub const MAX_RECORD_BYTES: usize = 128 * 1024;
    /// Largest output (JSON) a guest may answer.
    pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;
}

/// A plugin's way out: its allowed hosts and response cap (the connections are the
/// calling thread's, [`egress::exchange`]).
pub struct Egress {
    slug: Arc<str>,
    allowed: AllowedHosts,
    max_response_bytes: u64,
}

impl Egress {
    pub fn new(slug: &str, allowed: AllowedHosts, max_response_bytes: u64) -> Self {
        Egress {
            slug: slug.into(),
            allowed,
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
    /// Requests the guest has made, refused ones included.
    requests: usize,
    /// Bytes of the outbound records kept.
    record_bytes: usize,
}

impl CallState {
    pub fn new(
        egress: Arc<Egress>,
        redactor: Redactor,
        memory_bytes: usize,
        deadline: Instant,
    ) -> Self {
        let budget = Arc::new(AtomicUsize::new(MAX_OUTPUT_PER_CALL));
        // Guest output is written out by tasks of its own: they log under the request
        // the call serves.
        let request = crate::observe::logs::current_request();
        let output = |stream| GuestOutput {
            slug: egress.slug.clone(),
            stream,
            redactor: redactor.clone(),
            budget: budget.clone(),
            request: request.clone(),
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
            requests: 0,
            record_bytes: 0,
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
        // Redact before cutting, so a secret straddling the cut is never half logged.
        let redacted = self.redactor.redact(&message);
        let message = truncate(&redacted, MAX_LOG_LINE);
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
        self.requests += 1;
        if let Some(refusal) = over_bounds(&request, self.requests) {
            // Refused before anything of it is copied or recorded at length.
            self.record(OutboundRecord {
                method: truncate(&request.method, 16).to_owned(),
                url: self
                    .redactor
                    .redact(&redact_query(truncate(&request.url, 256))),
                error: Some(describe(&refusal)),
                duration_ms: 0,
                ..OutboundRecord::default()
            });
            return Err(refusal);
        }
        let method = request.method.clone();
        let url = redact_query(&request.url);
        let request_headers = request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), redact_header(name, value, &self.redactor)))
            .collect();
        let request_body = body_excerpt(&request.body, &self.redactor);
        let result = send(&self.egress, request, self.deadline).await;
        self.record(OutboundRecord {
            method,
            url: self.redactor.redact(&url),
            status: result.as_ref().ok().map(|r| r.status),
            error: result
                .as_ref()
                .err()
                .map(|e| self.redactor.redact(&describe(e))),
            duration_ms: started.elapsed().as_millis() as u64,
            request_headers,
            request_body,
            response_body: result
                .as_ref()
                .ok()
                .and_then(|r| body_excerpt(&r.body, &self.redactor)),
            retry_after_ms: result
                .as_ref()
                .ok()
                .filter(|r| r.status >= 400)
                .and_then(|r| retry_hint(&r.headers)),
        });
        result
    }
}

impl CallState {
    /// Keeps an outbound record for the audit within the call's bounds; past them one
    /// marker says that more requests were made than recorded.
    fn record(&mut self, record: OutboundRecord) {
        let size = record.approximate_size();
        let full = self.outbound.len() >= bounds::MAX_RECORDS
            || self.record_bytes + size > bounds::MAX_RECORD_BYTES;
        if !full {
            self.record_bytes += size;
            self.outbound.push(record);
        } else if !self
            .outbound
            .last()
            .is_some_and(OutboundRecord::is_overflow_marker)
        {
            self.outbound.push(OutboundRecord::overflow_marker());
        }
    }
}

/// Why a guest's request is refused before it is looked at further, if it is.
fn over_bounds(request: &http::Request, made: usize) -> Option<http::HttpError> {
    use bounds::*;
    let invalid = |what: String| Some(http::HttpError::Invalid(what));
    if made > MAX_REQUESTS_PER_CALL {
        return invalid(format!(
            "more than {MAX_REQUESTS_PER_CALL} requests in one call"
        ));
    }
    if request.url.len() > MAX_URL_BYTES {
        return invalid(format!("URL longer than {MAX_URL_BYTES} bytes"));
    }
    let header_bytes: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if request.headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return invalid(format!(
            "more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of headers"
        ));
    }
    if request.body.len() > MAX_REQUEST_BODY_BYTES {
        return Some(http::HttpError::TooLarge(MAX_REQUEST_BODY_BYTES as u64));
    }
    None
}

/// The longest wait a provider's answer may ask for; a larger one is taken as this.
const MAX_RETRY_HINT_MS: u64 = 3600 * 1000;

/// When a refusing provider says to come back, in ms: `Retry-After` in seconds (429s
/// and GitHub's secondary limits), else an exhausted `X-RateLimit-Remaining` with the
/// unix time of `X-RateLimit-Reset` (GitHub's primary limit, and others that copied
/// it); at most an hour.
fn retry_hint(headers: &[(String, String)]) -> Option<u64> {
    raw_retry_hint(headers).map(|ms| ms.min(MAX_RETRY_HINT_MS))
}

fn raw_retry_hint(headers: &[(String, String)]) -> Option<u64> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(seconds.saturating_mul(1000));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")?.parse::<u64>().ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        return Some(reset.saturating_sub(now).max(1).saturating_mul(1000));
    }
    None
}

/// Performs one outbound request under the plugin's policy.
async fn send(
    egress: &Egress,
    request: http::Request,
    deadline: Instant,
) -> Result<http::Response, http::HttpError> {
    use http::HttpError;
    let method = ::http::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .ok()
        .filter(|m| {
            matches!(
                m.as_str(),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
            )
        })
        .ok_or_else(|| HttpError::Invalid(format!("method `{}` is not allowed", request.method)))?;
    let url =
        url::Url::parse(&request.url).map_err(|e| HttpError::Invalid(format!("bad URL: {e}")))?;
    egress.allowed.check(&url).map_err(HttpError::Denied)?;
    let target =
        egress::Target::of(&url).ok_or_else(|| HttpError::Invalid("the URL has no host".into()))?;

    let mut outbound =
        ::http::Request::new(http_body_util::Full::new(bytes::Bytes::from(request.body)));
    *outbound.method_mut() = method;
    *outbound.uri_mut() = origin_form(&url)?;
    let headers = outbound.headers_mut();
    for (name, value) in &request.headers {
        if egress::is_forbidden_header(name) {
            continue;
        }
        let name = ::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("bad header name `{name}`")))?;
        let value = ::http::HeaderValue::from_str(value)
            .map_err(|_| HttpError::Invalid(format!("bad value for header `{name}`")))?;
        headers.append(name, value);
    }
    let host = ::http::HeaderValue::from_str(&target.authority())
        .map_err(|_| HttpError::Invalid("bad host".into()))?;
    headers.insert(::http::header::HOST, host);
    if !headers.contains_key(::http::header::ACCEPT) {
        headers.insert(
            ::http::header::ACCEPT,
            ::http::HeaderValue::from_static("*/*"),
        );
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
    let exchange = egress::exchange(&target, outbound, egress.max_response_bytes);
    match tokio::time::timeout(timeout, exchange).await {
        Err(_elapsed) => Err(HttpError::Timeout),
        Ok(Err(failure)) => Err(match failure {
            egress::Failure::Denied(reason) => HttpError::Denied(reason),
            egress::Failure::Unreachable(kind) => HttpError::Unreachable(kind.into()),
            egress::Failure::TooLarge(cap) => HttpError::TooLarge(cap),
        }),
        Ok(Ok(exchange)) => Ok(http::Response {
            status: exchange.status,
            headers: exchange.headers,
            body: exchange.body,
        }),
    }
}

/// The request target as an HTTP/1.1 request line carries it: path and query.
fn origin_form(url: &url::Url) -> Result<::http::Uri, http::HttpError> {
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let path = if path.is_empty() { "/" } else { path };
    path.parse()
        .map_err(|_| http::HttpError::Invalid("bad URL: its path cannot be sent".into()))
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

/// Longest body excerpt kept in an audit record.
const MAX_BODY_EXCERPT: usize = 2048;

/// Header names whose values are credentials, whatever their value.
fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "proxy-authorization"
        || name == "cookie"
        || name == "api-key"
        || ["token", "secret", "key", "auth", "password", "signature"]
            .iter()
            .any(|word| name.contains(word))
            && name != "idempotency-key"
}

fn redact_header(name: &str, value: &str, redactor: &Redactor) -> String {
    if is_credential_header(name) {
        "<redacted>".into()
    } else {
        redactor.redact(value)
    }
}

/// The start of a body as text for the audit record: the vended secrets replaced, and
/// the values of credential-named fields (`access_token`, `client_secret`…) dropped,
/// since an OAuth answer carries new tokens the redactor cannot know yet.
fn body_excerpt(body: &[u8], redactor: &Redactor) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    let text = match json_has_credential_field(&text) {
        // JSON without a credential field is kept as it came (no tree built).
        Some(false) => text,
        Some(true) => {
            let mut json: serde_json::Value =
                serde_json::from_str(&text).expect("scanned as JSON just now");
            redact_json_fields(&mut json);
            json.to_string().into()
        }
        None if text.contains('=') && !text.contains(char::is_whitespace) => {
            redact_form_fields(&text).into()
        }
        None => text,
    };
    let mut excerpt = redactor.redact(&text);
    if excerpt.len() > MAX_BODY_EXCERPT {
        let mut cut = MAX_BODY_EXCERPT;
        while !excerpt.is_char_boundary(cut) {
            cut -= 1;
        }
        excerpt.truncate(cut);
        excerpt.push('…');
    }
    Some(excerpt)
}

/// Whether `text`, if it is one JSON document, has a credential-named field (`None`:
/// it is not JSON). Walks the text without building it.
fn json_has_credential_field(text: &str) -> Option<bool> {
    use serde::de::DeserializeSeed;
    let mut json = serde_json::Deserializer::from_str(text);
    let found = CredentialScan.deserialize(&mut json).ok()?;
    json.end().ok()?;
    Some(found)
}

/// A JSON value walked for credential fields ([`json_has_credential_field`]).
#[derive(Clone, Copy)]
struct CredentialScan;

impl<'de> serde::de::DeserializeSeed<'de> for CredentialScan {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CredentialScan {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(credential) = map.next_key_seed(CredentialKey)? {
            // A credential-named field sends the text down the full path, which
            // redacts exactly those holding something other than null or a number.
            found |= if credential {
                map.next_value::<serde::de::IgnoredAny>()?;
                true
            } else {
                map.next_value_seed(CredentialScan)?
            };
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(inner) = seq.next_element_seed(CredentialScan)? {
            found |= inner;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A field name: whether it names a credential.
struct CredentialKey;

impl<'de> serde::de::DeserializeSeed<'de> for CredentialKey {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for CredentialKey {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(is_credential_field(key, false))
    }
}

/// Field names whose values are credentials. In forms (OAuth requests) an
/// authorization `code` and a PKCE `code_verifier` are too; in JSON a `code` is an
/// error code. Names are compared by their letters and digits, lower-cased
/// (`client_secret`, `clientSecret` and `Client-Secret` alike).
fn is_credential_field(name: &str, form: bool) -> bool {
    // Every field name of every body passes here: no allocation for the usual ones.
    let mut buffer = [0u8; 64];
    let mut owned = Vec::new();
    let normalized: &[u8] = if name.len() <= buffer.len() {
        let mut len = 0;
        for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
            buffer[len] = b.to_ascii_lowercase();
            len += 1;
        }
        &buffer[..len]
    } else {
        owned.extend(
            name.bytes()
                .filter(u8::is_ascii_alphanumeric)
                .map(|b| b.to_ascii_lowercase()),
        );
        &owned
    };
    let contains = |word: &[u8]| normalized.windows(word.len()).any(|w| w == word);
    [
        &b"token"[..],
        b"secret",
        b"password",
        b"apikey",
        b"assertion",
    ]
    .iter()
    .any(|word| contains(word))
        || form && (normalized == b"code" || contains(b"verifier"))
}

fn redact_json_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if is_credential_field(key, false) && !field.is_null() && !field.is_number() {
                    *field = "<redacted>".into();
                } else {
                    redact_json_fields(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json_fields),
        _ => {}
    }
}

fn redact_form_fields(form: &str) -> String {
    form.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential_field(name, true) => format!("{name}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
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
    request: Option<Arc<crate::observe::logs::RequestContext>>,
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
        let redacted = self.redactor.redact(text);
        let text = truncate(&redacted, granted.min(MAX_LOG_LINE));
        let line = || tracing::info!(plugin = &*self.slug, stream = self.stream, "{text}");
        match &self.request {
            Some(request) => crate::observe::logs::in_request(request, line),
            None => line(),
        }
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
    #[test]
    fn providers_say_when_to_retry_in_two_ways() {
        let headers = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            super::retry_hint(&headers(&[("Retry-After", "30")])),
            Some(30_000)
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset = (now + 90).to_string();
        let wait = super::retry_hint(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]))
        .unwrap();
        assert!((89_000..=90_000).contains(&wait), "{wait}");
        // Budget left, or nothing said: no hint.
        assert_eq!(
            super::retry_hint(&headers(&[
                ("x-ratelimit-remaining", "12"),
                ("x-ratelimit-reset", &reset)
            ])),
            None
        );
        assert_eq!(
            super::retry_hint(&headers(&[("retry-after", "soon")])),
            None
        );
        assert_eq!(super::retry_hint(&[]), None);
        // A provider cannot park a caller for days.
        assert_eq!(
            super::retry_hint(&headers(&[("retry-after", "999999")])),
            Some(3_600_000)
        );
    }

    #[test]
    fn audit_excerpts_drop_credentials() {
        let redactor = super::Redactor::new(["sk_test_vended_secret"]);
        let json = br#"{"access_token":"ya29.new","expires_in":3599,"note":"sk_test_vended_secret","error":{"code":"card_declined"}}"#;
        let excerpt = super::body_excerpt(json, &redactor).unwrap();
        assert!(
            !excerpt.contains("ya29.new") && !excerpt.contains("sk_test_vended"),
            "{excerpt}"
        );
        assert!(
            excerpt.contains("card_declined") && excerpt.contains("3599"),
            "{excerpt}"
        );
        let form = b"grant_type=authorization_code&code=4%2Fabc&code_verifier=xyz&client_secret=s3cr3t&amount=100";
        let excerpt = super::body_excerpt(form, &redactor).unwrap();
        assert_eq!(
            excerpt,
            "grant_type=authorization_code&code=<redacted>&code_verifier=<redacted>&client_secret=<redacted>&amount=100"
        );
        assert_eq!(
            super::redact_header("X-Postmark-Server-Token", "abc", &redactor),
            "<redacted>"
        );
        assert_eq!(
            super::redact_header("Idempotency-Key", "k1", &redactor),
            "k1"
        );
        assert_eq!(
            super::redact_header("Accept", "application/json", &redactor),
            "application/json"
        );
    }

    use super::*;

    #[test]
    fn a_json_body_without_credential_fields_is_kept_as_sent_and_one_with_them_is_not() {
        let redactor = Redactor::new(["sk_test_vended_secret"]);
        let plain = br#"{"id": "cus_1",  "email":"ada@example.com","tags":[1,{"x":null}]}"#;
        assert_eq!(
            body_excerpt(plain, &redactor).unwrap().as_bytes(),
            plain,
            "no tree rebuilt: spacing and key order as the provider sent them"
        );
        for key in [
            "clientSecret",
            "Client-Secret",
            "REFRESH_TOKEN",
            "x_api_key",
        ] {
            let nested =
                format!(r#"{{"data":[{{"ok":1}},{{"auth":{{"{key}":"leak-me-please"}}}}]}}"#);
            let excerpt = body_excerpt(nested.as_bytes(), &redactor).unwrap();
            assert!(!excerpt.contains("leak-me-please"), "{key}: {excerpt}");
            assert!(excerpt.contains("<redacted>"), "{key}: {excerpt}");
        }
        // Not JSON (trailing garbage): the text as it is, the vended secret replaced.
        let excerpt = body_excerpt(b"{} sk_test_vended_secret", &redactor).unwrap();
        assert_eq!(excerpt, "{} <redacted>");
        assert!(is_credential_field(
            &"k".repeat(100).replace("kk", "to-ken"),
            false
        ));
    }

    fn request(url_bytes: usize, headers: usize, body_bytes: usize) -> http::Request {
        http::Request {
            method: "POST".into(),
            url: format!("https://api.example.com/{}", "a".repeat(url_bytes)),
            headers: (0..headers)
                .map(|i| (format!("x-{i}"), "v".into()))
                .collect(),
            body: vec![0; body_bytes],
            timeout_ms: None,
        }
    }

    #[test]
    fn oversized_requests_are_refused_before_they_are_looked_at() {
        use bounds::*;
        assert!(over_bounds(&request(10, 2, 10), 1).is_none());
        let refused = |r: &http::Request, made| over_bounds(r, made).map(|e| describe(&e));
        assert!(refused(&request(MAX_URL_BYTES, 0, 0), 1)
            .unwrap()
            .contains("URL longer"));
        assert!(refused(&request(10, MAX_HEADERS + 1, 0), 1)
            .unwrap()
            .contains("headers"));
        assert!(refused(&request(10, 0, MAX_REQUEST_BODY_BYTES + 1), 1)
            .unwrap()
            .contains("too large"));
        assert!(refused(&request(10, 0, 0), MAX_REQUESTS_PER_CALL + 1)
            .unwrap()
            .contains("requests in one call"));
    }

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
