//! Outbound HTTP through the host's `http` import, the only way out of the sandbox.
//!
//! ```ignore
//! let response = Request::post(format!("{base}/v1/customers"))
//!     .bearer(api_key)
//!     .form(&json!({"email": "a@example.com"}))
//!     .send()?;
//! let body = response.json()?;
//! ```
//!
//! [`Request::send`] turns transport failures into connector errors: timeouts and
//! unreachable hosts are `transient`, a refusal by the host is `internal` (the
//! connector's allowed hosts or configuration are wrong). [`Request::send_raw`] returns
//! the host's [`HttpError`] as it is, for connectors that want to tell them apart.

use crate::bindings::conduit::connector::http as wit;
pub use crate::bindings::conduit::connector::http::HttpError;
use crate::Error;
use serde_json::Value;

/// An outbound request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u32>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_owned(),
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }
    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }
    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }
    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }
    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a header when the value is present.
    pub fn header_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.header(name, value),
            None => self,
        }
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sets `Authorization: Basic` from a user and password (Twilio's Account SID and
    /// auth token, for one).
    pub fn basic(self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", format!("Basic {token}"))
    }

    /// Appends a query parameter (percent-encoded).
    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    /// A bracketed `application/x-www-form-urlencoded` body (see [`crate::form`]).
    pub fn form(mut self, body: &Value) -> Self {
        self.body = crate::form::encode(body).into_bytes();
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// A JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }

    /// A raw body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// A timeout for this request (the host caps it at the call's deadline).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request; transport failures become connector errors.
    pub fn send(self) -> Result<Response, Error> {
        self.send_raw().map_err(|e| match e {
            HttpError::Timeout => Error::transient("provider request timed out"),
            HttpError::Unreachable(m) => Error::transient(format!("provider unreachable: {m}")),
            HttpError::RateLimited(ms) => {
                Error::transient(format!("rate limited, retry in {ms} ms"))
            }
            HttpError::TooLarge(cap) => {
                Error::internal(format!("response larger than {cap} bytes"))
            }
            HttpError::Denied(m) => Error::internal(format!("request denied by host: {m}")),
            HttpError::Invalid(m) => Error::internal(format!("invalid request: {m}")),
        })
    }

    /// Sends the request and returns the host's transport error untouched.
    pub fn send_raw(self) -> Result<Response, HttpError> {
        let url = if self.query.is_empty() {
            self.url
        } else {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &self.query {
                query.append_pair(name, value);
            }
            let separator = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{separator}{}", self.url, query.finish())
        };
        let response = wit::send(&wit::Request {
            method: self.method,
            url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        })?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased by the host.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; an unparsable body is the provider's fault, so it is a
    /// provider error carrying the status.
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_slice(&self.body).map_err(|_| {
            Error::provider(
                self.status,
                None,
                format!("provider answered {} with a non-JSON body", self.status),
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
