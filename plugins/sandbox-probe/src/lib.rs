//! A deliberately hostile connector for the sandbox tests: each capability tries one
//! thing a malicious or buggy connector might do. `probe.echo` makes no host call and is
//! what the dispatch benchmark measures.
//!
//! The same source builds three components for the hot-loading tests: this crate
//! (version 1), `sandbox-probe-v2` (feature `v2`: version 2, without `probe.print`) and
//! `sandbox-probe-trap-info` (feature `trap-info`: its `info()` traps).

use conduit_sdk::http::{HttpError, Request};
use conduit_sdk::input::str_field;
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};

struct Probe;

/// `info().version`, and what `probe.version` answers.
const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

/// A port on loopback the component names in its own allowed hosts, which it may not
/// reach until the operator grants it (the hot-loading egress test listens there).
const SELF_DECLARED_LOOPBACK: &str = "127.0.0.1:47831";

const CAPABILITIES: &[&str] = &[
    "probe.echo",
    "probe.version",
    "probe.flood",
    "probe.spin",
    "probe.allocate",
    "probe.fetch",
    "probe.trap",
    "probe.readFile",
    "probe.env",
    "probe.print",
];

/// Version 2 no longer offers `probe.print`.
fn offered(key: &str) -> bool {
    !(cfg!(feature = "v2") && key == "probe.print")
}

impl Connector for Probe {
    fn info() -> ConnectorInfo {
        if cfg!(feature = "trap-info") {
            core::arch::wasm32::unreachable();
        }
        ConnectorInfo {
            slug: "sandbox-probe".into(),
            integration_key: "testing.probe".into(),
            version: VERSION,
            display_name: "Sandbox probe".into(),
            category: "testing".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec!["byok".into()],
            capabilities: CAPABILITIES
                .iter()
                .filter(|key| offered(key))
                .map(|key| Capability::new(key, 1, "hostile probe"))
                .collect(),
            allowed_hosts: vec![
                "example.com".into(),
                SELF_DECLARED_LOOPBACK.into(),
                "169.254.169.254".into(),
            ],
            rate_profile: RateProfile {
                requests: 1000,
                per_seconds: 1,
                burst: 1000,
            },
            oauth: None,
        }
    }

    fn execute(
        _ctx: &Context,
        _secret: &Secret,
        capability: &str,
        input: Value,
    ) -> Result<Value, Error> {
        match capability {
            "probe.echo" => Ok(input),
            "probe.version" => Ok(json!({"version": VERSION})),
            "probe.flood" => Ok(flood(&input)),
            "probe.spin" => spin(),
            "probe.allocate" => Ok(json!({"allocated": allocate()})),
            "probe.fetch" => Ok(fetch(str_field(&input, "url")?)),
            "probe.trap" => core::arch::wasm32::unreachable(),
            "probe.readFile" => Ok(match std::fs::read_to_string(str_field(&input, "path")?) {
                Ok(text) => json!({"read": text}),
                Err(e) => json!({"error": e.to_string()}),
            }),
            "probe.env" => Ok(json!({
                "vars": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>(),
                "cwd": std::env::current_dir().map(|p| p.display().to_string()).ok(),
            })),
            "probe.print" => {
                println!("probe stdout: {}", input["message"].as_str().unwrap_or(""));
                eprintln!("probe stderr: {}", input["message"].as_str().unwrap_or(""));
                Ok(json!({"printed": true}))
            }
            other => Err(Error::unsupported(format!("no capability `{other}`"))),
        }
    }

    fn health_check(_ctx: &Context, _secret: &Secret) -> Result<Health, Error> {
        Ok(Health {
            healthy: true,
            detail: "probe".into(),
        })
    }
}

conduit_sdk::export_connector!(Probe);

/// Loops forever; only the host's epoch deadline can stop it.
fn spin() -> Result<Value, Error> {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, touching every page, until the host refuses to grow memory.
fn allocate() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for i in (0..chunk.len()).step_by(4096) {
            chunk[i] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
        if chunks.len() > 1 << 16 {
            return chunks.len();
        }
    }
}

/// Sends `count` requests, each with a URL of `urlBytes` and a body of `bodyBytes`, to
/// `url`, and counts how the host answered: a guest trying to make the host hold what
/// it sends.
fn flood(input: &Value) -> Value {
    let number = |key: &str| input[key].as_u64().unwrap_or(0) as usize;
    let url = input["url"].as_str().unwrap_or("https://example.com/");
    let long_url = format!("{url}{}", "a".repeat(number("urlBytes")));
    let body = vec![b'x'; number("bodyBytes")];
    let mut answers = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..number("count") {
        let answer = match Request::post(long_url.clone())
            .body(body.clone())
            .send_raw()
        {
            Ok(response) => format!("status {}", response.status),
            Err(HttpError::Denied(_)) => "denied".into(),
            Err(HttpError::Invalid(_)) => "invalid".into(),
            Err(HttpError::TooLarge(_)) => "too-large".into(),
            Err(other) => format!("{other:?}"),
        };
        *answers.entry(answer).or_default() += 1;
    }
    json!(answers)
}

/// Tries to reach `url`, reporting the host's answer or refusal as data.
fn fetch(url: &str) -> Value {
    match Request::get(url).send_raw() {
        Ok(response) => json!({"status": response.status, "body": response.text()}),
        Err(HttpError::Denied(reason)) => json!({"httpError": "denied", "detail": reason}),
        Err(HttpError::Timeout) => json!({"httpError": "timeout"}),
        Err(HttpError::Unreachable(reason)) => {
            json!({"httpError": "unreachable", "detail": reason})
        }
        Err(HttpError::TooLarge(cap)) => json!({"httpError": "too-large", "detail": cap}),
        Err(HttpError::RateLimited(ms)) => json!({"httpError": "rate-limited", "detail": ms}),
        Err(HttpError::Invalid(reason)) => json!({"httpError": "invalid", "detail": reason}),
    }
}
