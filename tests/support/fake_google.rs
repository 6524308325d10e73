//! A fake Google on loopback speaking Google's wire formats, for the Gmail connector.
//!
//! - `POST /token`: the OAuth 2.0 token endpoint. Form-encoded; the client is checked
//!   against [`CLIENT_ID`] / [`CLIENT_SECRET`]. `authorization_code` takes a single-use
//!   code from [`FakeGoogle::issue_code`] (redirect URI and PKCE S256 checked);
//!   `refresh_token` takes a known, unretired refresh token and, with rotation on, retires
//!   it and issues a new one. Errors are Google's `{"error", "error_description"}`.
//! - `/gmail/v1/users/me/…`: `POST messages/send` (`{"raw"}`: base64url RFC 2822),
//!   `GET messages` (`maxResults`, `q`, `pageToken`), `GET messages/{id}` (a `format=full`
//!   payload) and `GET profile`. Only issued, unexpired bearer tokens are accepted;
//!   errors are Google's `{"error": {"code", "message", "status"}}`.
//!
//! Knobs (`set_rotate`, `set_expires_in`, `set_token_failure`, `set_token_delay`) and
//! counters (`token_requests`, `refresh_requests`, `exchange_requests`) serve the refresh
//! tests; every request is recorded ([`FakeGoogle::received`]) and every sent message
//! kept as decoded RFC 2822 text ([`FakeGoogle::sent_messages`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only OAuth client id the fake accepts.
pub const CLIENT_ID: &str = "1234567890-fake.apps.googleusercontent.com";
/// The only OAuth client secret the fake accepts.
pub const CLIENT_SECRET: &str = "GOCSPX-FakeClientSecretDoNotLeak123";
/// The mailbox's address (`profile.emailAddress`, and `From` when a message has none).
pub const EMAIL: &str = "user@example.com";
/// The scopes every token answer grants.
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.readonly";
/// The seeded messages' ids, newest first: text + html with a PDF attachment
/// (`multipart/mixed`), text only, html only with a non-ASCII subject.
pub const SEEDED_MESSAGE_IDS: [&str; 3] =
    ["18cc2a1b00000001", "18cbf0e400000002", "18cb4f8900000003"];
/// How long issued access tokens live unless changed with `set_expires_in`.
pub const DEFAULT_EXPIRES_IN: u64 = 3599;

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET`, `POST`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string's pairs.
    pub query: Vec<(String, String)>,
    /// Headers, names lower case.
    pub headers: HashMap<String, String>,
    /// The form pairs of an `application/x-www-form-urlencoded` body, else empty.
    pub form: Vec<(String, String)>,
    /// The body as text (lossy).
    pub body: String,
}

impl Received {
    /// A form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        find_pair(&self.form, name)
    }
    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        find_pair(&self.query, name)
    }
    /// A header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn find_pair<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An authorization code handed out by `issue_code`, waiting for its exchange.
struct IssuedCode {
    redirect_uri: String,
    code_challenge: Option<String>,
}

/// A message in the mailbox.
#[derive(Clone)]
struct Stored {
    id: String,
    thread_id: String,
    label_ids: Vec<String>,
    internal_date_ms: u64,
    /// Header values decoded (RFC 2047 words become UTF-8), as the Gmail API shows them.
    headers: Vec<(String, String)>,
    text: Option<String>,
    html: Option<String>,
    attachment: Option<String>,
}

struct Inner {
    received: Vec<Received>,
    codes: HashMap<String, IssuedCode>,
    refresh_tokens: HashSet<String>,
    retired_refresh_tokens: HashSet<String>,
    /// Access token → expiry; `None` never expires (seeded tokens).
    access_tokens: HashMap<String, Option<Instant>>,
    /// Newest first, as Gmail lists them.
    messages: Vec<Stored>,
    sent: Vec<String>,
    rotate: bool,
    expires_in: u64,
    token_failure: Option<u16>,
    token_delay: Duration,
    token_requests: usize,
    refresh_requests: usize,
    exchange_requests: usize,
    counter: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            received: Vec::new(),
            codes: HashMap::new(),
            refresh_tokens: HashSet::new(),
            retired_refresh_tokens: HashSet::new(),
            access_tokens: HashMap::new(),
            messages: seeded_messages(),
            sent: Vec::new(),
            rotate: false,
            expires_in: DEFAULT_EXPIRES_IN,
            token_failure: None,
            token_delay: Duration::ZERO,
            token_requests: 0,
            refresh_requests: 0,
            exchange_requests: 0,
            counter: 0,
        }
    }
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn issue_access_token(&mut self) -> String {
        let token = format!("ya29.fake-access-{:06}", self.next());
        let expiry = Instant::now() + Duration::from_secs(self.expires_in);
        self.access_tokens.insert(token.clone(), Some(expiry));
        token
    }

    fn issue_refresh_token(&mut self) -> String {
        let token = format!("1//fake-refresh-{:06}", self.next());
        self.refresh_tokens.insert(token.clone());
        token
    }

    /// Google's token answer; `refresh_token` only when one was issued.
    fn token_answer(&mut self, refresh_token: Option<String>) -> Response {
        let mut answer = json!({
            "access_token": self.issue_access_token(),
            "expires_in": self.expires_in,
            "scope": SCOPES,
            "token_type": "Bearer",
        });
        if let Some(refresh_token) = refresh_token {
            answer["refresh_token"] = json!(refresh_token);
        }
        Json(answer).into_response()
    }

    fn access_token_valid(&self, token: &str) -> bool {
        match self.access_tokens.get(token) {
            Some(None) => true,
            Some(Some(expiry)) => *expiry > Instant::now(),
            None => false,
        }
    }
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeGoogle {
    inner: Arc<Mutex<Inner>>,
}

/// Starts a fake Google; returns it and its address.
pub async fn start() -> (FakeGoogle, SocketAddr) {
    FakeGoogle::start().await
}

impl FakeGoogle {
    /// Starts the fake; returns it and its address.
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeGoogle::default();
        let router = Router::new()
            .route("/token", post(token))
            .route("/gmail/v1/users/me/messages/send", post(send_message))
            .route("/gmail/v1/users/me/messages", get(list_messages))
            .route("/gmail/v1/users/me/messages/{id}", get(get_message))
            .route("/gmail/v1/users/me/profile", get(profile))
            .with_state(fake.clone());
        let addr = super::serve_on_loopback(router).await;
        (fake, addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Issues a single-use authorization code for `redirect_uri`, as the consent page
    /// would; with a PKCE S256 `code_challenge` the exchange must bring its verifier.
    pub fn issue_code(&self, redirect_uri: &str, code_challenge: Option<String>) -> String {
        let mut inner = self.lock();
        let code = format!("4/fake-code-{:06}", inner.next());
        let issued = IssuedCode {
            redirect_uri: redirect_uri.to_owned(),
            code_challenge,
        };
        inner.codes.insert(code.clone(), issued);
        code
    }

    /// Whether each refresh retires its refresh token and answers a new one.
    pub fn set_rotate(&self, rotate: bool) {
        self.lock().rotate = rotate;
    }

    /// The `expires_in` of tokens issued from now on (0 expires them at once).
    pub fn set_expires_in(&self, secs: u64) {
        self.lock().expires_in = secs;
    }

    /// Makes every token request fail: `Some(400)` answers `invalid_grant`, any other
    /// status answers `{"error": "backend_error"}`; `None` restores normal answers.
    pub fn set_token_failure(&self, status: Option<u16>) {
        self.lock().token_failure = status;
    }

    /// Sleeps this long before answering each token request.
    pub fn set_token_delay(&self, delay: Duration) {
        self.lock().token_delay = delay;
    }

    /// Seeds a refresh token the fake accepts.
    pub fn add_refresh_token(&self, token: &str) {
        self.lock().refresh_tokens.insert(token.to_owned());
    }

    /// Seeds an access token the Gmail API accepts; it never expires.
    pub fn add_access_token(&self, token: &str) {
        self.lock().access_tokens.insert(token.to_owned(), None);
    }

    /// Makes every access token issued or seeded so far invalid (as if expired).
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// The access tokens the Gmail API accepts right now.
    pub fn valid_access_tokens(&self) -> Vec<String> {
        let inner = self.lock();
        let tokens = inner.access_tokens.keys();
        tokens
            .filter(|t| inner.access_token_valid(t))
            .cloned()
            .collect()
    }

    /// The refresh tokens the token endpoint accepts right now.
    pub fn live_refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh_tokens.iter().cloned().collect()
    }

    /// Every `POST /token`, whatever its grant or outcome.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// `POST /token` with `grant_type=refresh_token`.
    pub fn refresh_requests(&self) -> usize {
        self.lock().refresh_requests
    }

    /// `POST /token` with `grant_type=authorization_code`.
    pub fn exchange_requests(&self) -> usize {
        self.lock().exchange_requests
    }

    /// Every message sent through `messages/send`, decoded RFC 2822 text, oldest first.
    pub fn sent_messages(&self) -> Vec<String> {
        self.lock().sent.clone()
    }

    /// Records a request and returns it.
    fn record(&self, method: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Received {
        let headers: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let is_form = headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let received = Received {
            method: method.into(),
            path: uri.path().to_owned(),
            query: parse_pairs(uri.query().unwrap_or("").as_bytes()),
            form: if is_form {
                parse_pairs(body)
            } else {
                Vec::new()
            },
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
        };
        self.lock().received.push(received.clone());
        received
    }

    /// Records a Gmail API request and checks its bearer token.
    #[allow(clippy::result_large_err)]
    fn authorized(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Received, Response> {
        let received = self.record(method, uri, headers, body);
        let token = received
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let valid = token.is_some_and(|token| self.lock().access_token_valid(token));
        if valid {
            Ok(received)
        } else {
            Err(unauthenticated())
        }
    }
}

fn parse_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

// ---------------------------------------------------------------------------------
// OAuth token endpoint

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (status, Json(body)).into_response()
}

async fn token(
    State(fake): State<FakeGoogle>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = fake.record("POST", &uri, &headers, &body);
    let delay = {
        let mut inner = fake.lock();
        inner.token_requests += 1;
        match received.field("grant_type") {
            Some("refresh_token") => inner.refresh_requests += 1,
            Some("authorization_code") => inner.exchange_requests += 1,
            _ => {}
        }
        inner.token_delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer_token(&fake, &received)
}

fn answer_token(fake: &FakeGoogle, r: &Received) -> Response {
    let mut inner = fake.lock();
    let is_form = r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
    }
    match inner.token_failure {
        Some(400) => {
            let description = "Token has been expired or revoked.";
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
        }
        Some(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return oauth_error(status, "backend_error", "Backend Error");
        }
        None => {}
    }
    if r.field("client_id") != Some(CLIENT_ID) || r.field("client_secret") != Some(CLIENT_SECRET) {
        let description = "The OAuth client was not found.";
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    }
    match r.field("grant_type") {
        Some("authorization_code") => exchange_code(&mut inner, r),
        Some("refresh_token") => refresh(&mut inner, r),
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {}", other.unwrap_or("")),
        ),
    }
}

/// `grant_type=authorization_code`: the code is spent whatever the outcome.
fn exchange_code(inner: &mut Inner, r: &Received) -> Response {
    let issued = r.field("code").and_then(|code| inner.codes.remove(code));
    let valid = issued.is_some_and(|issued| {
        let redirect_ok = r.field("redirect_uri") == Some(issued.redirect_uri.as_str());
        let pkce_ok = match &issued.code_challenge {
            None => true,
            Some(challenge) => r
                .field("code_verifier")
                .is_some_and(|verifier| s256(verifier) == *challenge),
        };
        redirect_ok && pkce_ok
    });
    if !valid {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    let refresh_token = inner.issue_refresh_token();
    inner.token_answer(Some(refresh_token))
}

/// BASE64URL-NOPAD(SHA256(verifier)), PKCE's S256 challenge.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `grant_type=refresh_token`, rotating the refresh token when rotation is on.
fn refresh(inner: &mut Inner, r: &Received) -> Response {
    let token = r.field("refresh_token").unwrap_or("");
    if !inner.refresh_tokens.contains(token) {
        let description = "Token has been expired or revoked.";
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    }
    if !inner.rotate {
        return inner.token_answer(None);
    }
    inner.refresh_tokens.remove(token);
    inner.retired_refresh_tokens.insert(token.to_owned());
    let rotated = inner.issue_refresh_token();
    inner.token_answer(Some(rotated))
}

// ---------------------------------------------------------------------------------
// Gmail API

fn gmail_error(status: StatusCode, message: &str, status_name: &str) -> Response {
    let body =
        json!({"error": {"code": status.as_u16(), "message": message, "status": status_name}});
    (status, Json(body)).into_response()
}

fn unauthenticated() -> Response {
    let body = json!({"error": {
        "code": 401,
        "message": "Request had invalid authentication credentials.",
        "status": "UNAUTHENTICATED",
    }});
    let challenge = "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"";
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(body),
    )
        .into_response()
}

fn invalid_argument(message: &str) -> Response {
    gmail_error(StatusCode::BAD_REQUEST, message, "INVALID_ARGUMENT")
}

async fn send_message(
    State(fake): State<FakeGoogle>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = fake.authorized("POST", &uri, &headers, &body) {
        return response;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_argument("Invalid JSON payload received.");
    };
    let Some(raw) = request["raw"].as_str() else {
        return invalid_argument(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')) else {
        return invalid_argument(
            "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed.",
        );
    };
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let (mut message_headers, text, html) = parse_message(&raw);
    let has_recipient = ["To", "Cc", "Bcc"]
        .iter()
        .any(|name| header_of(&message_headers, name).is_some_and(|v| !v.trim().is_empty()));
    if !has_recipient {
        return invalid_argument("Recipient address required");
    }
    if header_of(&message_headers, "From").is_none() {
        message_headers.insert(0, ("From".into(), EMAIL.into()));
    }
    let mut inner = fake.lock();
    let id = format!("18d{:013x}", inner.next());
    let thread_id = request["threadId"].as_str().unwrap_or(&id).to_owned();
    inner.sent.push(raw);
    inner.messages.insert(
        0,
        Stored {
            id: id.clone(),
            thread_id: thread_id.clone(),
            label_ids: vec!["SENT".into()],
            internal_date_ms: now_ms(),
            headers: message_headers,
            text,
            html,
            attachment: None,
        },
    );
    Json(json!({"id": id, "threadId": thread_id, "labelIds": ["SENT"]})).into_response()
}

async fn list_messages(State(fake): State<FakeGoogle>, uri: Uri, headers: HeaderMap) -> Response {
    let r = match fake.authorized("GET", &uri, &headers, b"") {
        Ok(r) => r,
        Err(response) => return response,
    };
    let max = match r.query_param("maxResults").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => return invalid_argument("Invalid maxResults"),
    };
    let offset = match r.query_param("pageToken").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid_argument("Invalid pageToken"),
    };
    let query = r.query_param("q").unwrap_or("");
    let inner = fake.lock();
    let found: Vec<&Stored> = inner.messages.iter().filter(|m| m.matches(query)).collect();
    let page: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(max)
        .map(|m| json!({"id": m.id, "threadId": m.thread_id}))
        .collect();
    // Like Gmail: no `messages` field at all when nothing matches.
    let mut answer = json!({"resultSizeEstimate": found.len()});
    if !page.is_empty() {
        answer["messages"] = json!(page);
    }
    if offset + max < found.len() {
        answer["nextPageToken"] = json!((offset + max).to_string());
    }
    Json(answer).into_response()
}

async fn get_message(
    State(fake): State<FakeGoogle>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = fake.authorized("GET", &uri, &headers, b"") {
        return response;
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return invalid_argument("Invalid id value");
    }
    let inner = fake.lock();
    let Some(message) = inner.messages.iter().find(|m| m.id == id) else {
        return gmail_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
            "NOT_FOUND",
        );
    };
    Json(message.full()).into_response()
}

async fn profile(State(fake): State<FakeGoogle>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(response) = fake.authorized("GET", &uri, &headers, b"") {
        return response;
    }
    let inner = fake.lock();
    let threads: HashSet<&str> = inner
        .messages
        .iter()
        .map(|m| m.thread_id.as_str())
        .collect();
    Json(json!({
        "emailAddress": EMAIL,
        "messagesTotal": inner.messages.len(),
        "threadsTotal": threads.len(),
        "historyId": "1000",
    }))
    .into_response()
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// A small subset of Gmail's search: `in:`/`label:`/`is:` match labels, `from:`,
    /// `to:` and `subject:` match headers, any other term matches headers and bodies
    /// (case-insensitive); every term must match.
    fn matches(&self, query: &str) -> bool {
        query.split_whitespace().all(|term| {
            let term = term.to_lowercase();
            match term.split_once(':') {
                Some(("in" | "label" | "is", label)) => {
                    self.label_ids.iter().any(|l| l.eq_ignore_ascii_case(label))
                }
                Some((name @ ("from" | "to" | "subject"), value)) => self
                    .header(name)
                    .is_some_and(|h| h.to_lowercase().contains(value)),
                _ => self.searchable().contains(&term),
            }
        })
    }

    fn searchable(&self) -> String {
        let headers = self.headers.iter().map(|(_, v)| v.as_str());
        let bodies = [self.text.as_deref(), self.html.as_deref()];
        headers
            .chain(bodies.into_iter().flatten())
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase()
    }

    /// The message as `GET messages/{id}?format=full` answers it.
    fn full(&self) -> Value {
        let mut payload = self.payload();
        payload["partId"] = json!("");
        payload["headers"] = json!(self
            .headers
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect::<Vec<_>>());
        let snippet: String = self
            .text
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        json!({
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": self.label_ids,
            "snippet": snippet,
            "historyId": "1000",
            "internalDate": self.internal_date_ms.to_string(),
            "sizeEstimate": self.text.as_ref().map_or(0, String::len)
                + self.html.as_ref().map_or(0, String::len),
            "payload": payload,
        })
    }

    /// The MIME tree: one leaf, `multipart/alternative` for text + html, wrapped in
    /// `multipart/mixed` when there is an attachment.
    fn payload(&self) -> Value {
        let mut leaves: Vec<Value> = [("text/plain", &self.text), ("text/html", &self.html)]
            .into_iter()
            .filter_map(|(mime, body)| body.as_deref().map(|body| leaf(mime, body)))
            .collect();
        let content = match leaves.len() {
            0 => json!({"mimeType": "text/plain", "filename": "", "body": {"size": 0}}),
            1 => leaves.remove(0),
            _ => multipart("alternative", leaves),
        };
        match &self.attachment {
            None => content,
            Some(filename) => {
                let attachment = json!({
                    "mimeType": "application/pdf",
                    "filename": filename,
                    "headers": [{"name": "Content-Type", "value": "application/pdf"}],
                    "body": {"attachmentId": "ANGjdJ-fake-attachment", "size": 1024},
                });
                multipart("mixed", vec![content, attachment])
            }
        }
    }
}

fn leaf(mime: &str, body: &str) -> Value {
    json!({
        "mimeType": mime,
        "filename": "",
        "headers": [{"name": "Content-Type", "value": format!("{mime}; charset=\"UTF-8\"")}],
        "body": {"size": body.len(), "data": URL_SAFE.encode(body.as_bytes())},
    })
}

fn multipart(subtype: &str, parts: Vec<Value>) -> Value {
    json!({
        "mimeType": format!("multipart/{subtype}"),
        "filename": "",
        "headers": [{"name": "Content-Type", "value": format!("multipart/{subtype}; boundary=\"fake-{subtype}\"")}],
        "body": {"size": 0},
        "parts": parts,
    })
}

fn seeded_messages() -> Vec<Stored> {
    let seed = |id: &str, date: &str, ms: u64, from: &str, subject: &str| Stored {
        id: id.into(),
        thread_id: id.into(),
        label_ids: vec!["INBOX".into()],
        internal_date_ms: ms,
        headers: vec![
            ("From".into(), from.into()),
            ("To".into(), EMAIL.into()),
            ("Subject".into(), subject.into()),
            ("Date".into(), date.into()),
            ("Message-ID".into(), format!("<{id}@mail.example.org>")),
        ],
        text: None,
        html: None,
        attachment: None,
    };
    let [first, second, third] = SEEDED_MESSAGE_IDS;
    let mut invoice = seed(
        first,
        "Mon, 01 Jan 2024 09:00:00 +0000",
        1_704_099_600_000,
        "Alice Example <alice@example.org>",
        "Invoice for December",
    );
    invoice.label_ids.push("UNREAD".into());
    invoice.text = Some("Hi, the invoice is attached.\r\nAlice".into());
    invoice.html = Some("<p>Hi, the invoice is <b>attached</b>.</p><p>Alice</p>".into());
    invoice.attachment = Some("invoice.pdf".into());
    let mut plain = seed(
        second,
        "Sun, 31 Dec 2023 18:30:00 +0000",
        1_704_047_400_000,
        "bob@example.org",
        "Lunch tomorrow?",
    );
    plain.text = Some("Are you free for lunch tomorrow?".into());
    let mut html = seed(
        third,
        "Fri, 29 Dec 2023 08:15:00 +0000",
        1_703_837_700_000,
        "Zoë Martin <zoe@example.org>",
        "Réunion de l'équipe",
    );
    html.html = Some("<p>La réunion est à <b>10h</b>.</p>".into());
    vec![invoice, plain, html]
}

// ---------------------------------------------------------------------------------
// Reading a sent RFC 2822 message

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decoded headers plus the first `text/plain` and `text/html` bodies.
fn parse_message(raw: &str) -> (Vec<(String, String)>, Option<String>, Option<String>) {
    let (headers, body) = split_entity(raw);
    let (mut text, mut html) = (None, None);
    collect_bodies(&headers, body, &mut text, &mut html);
    let decoded = headers
        .into_iter()
        .map(|(name, value)| (name, decode_words(&value)))
        .collect();
    (decoded, text, html)
}

/// Splits an entity into its unfolded headers and its body.
fn split_entity(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn collect_bodies(
    headers: &[(String, String)],
    body: &str,
    text: &mut Option<String>,
    html: &mut Option<String>,
) {
    let content_type = header_of(headers, "Content-Type").unwrap_or("text/plain");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let Some(boundary) = boundary_of(content_type) else {
            return;
        };
        for part in body.split(&format!("--{boundary}")).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = part.trim_start_matches(['\r', '\n']);
            let (part_headers, part_body) = split_entity(part);
            collect_bodies(&part_headers, part_body, text, html);
        }
        return;
    }
    let slot = match mime.as_str() {
        "text/plain" => text,
        "text/html" => html,
        _ => return,
    };
    if slot.is_none() {
        let encoding = header_of(headers, "Content-Transfer-Encoding").unwrap_or("7bit");
        *slot = Some(decode_transfer(encoding, body));
    }
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Undoes `base64`; other encodings (7bit, 8bit) are taken as they are.
fn decode_transfer(encoding: &str, body: &str) -> String {
    if encoding.eq_ignore_ascii_case("base64") {
        let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD.decode(compact).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        body.trim_end_matches(['\r', '\n']).to_owned()
    }
}

/// Decodes RFC 2047 `=?charset?B?…?=` words (UTF-8 assumed); the whitespace between
/// two adjacent encoded words is dropped, as RFC 2047 says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut previous_encoded = false;
    for (i, token) in value.split_whitespace().enumerate() {
        let decoded = decode_word(token);
        if i > 0 && !(previous_encoded && decoded.is_some()) {
            out.push(' ');
        }
        previous_encoded = decoded.is_some();
        out.push_str(decoded.as_deref().unwrap_or(token));
    }
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut fields = inner.splitn(3, '?');
    let (_charset, encoding, text) = (fields.next()?, fields.next()?, fields.next()?);
    if !encoding.eq_ignore_ascii_case("B") {
        return None;
    }
    let bytes = STANDARD.decode(text).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
