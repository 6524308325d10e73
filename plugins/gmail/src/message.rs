//! RFC 2822 messages: building the one `email.send@1` submits as Gmail's `raw`, and
//! reading the parsed `payload` Gmail answers for `format=full`.
//!
//! Everything here is a pure function of JSON, so it never calls the host; errors are
//! messages for `invalid-input`. Header values are stripped of CR, LF and other control
//! characters (no header injection) and non-ASCII text becomes RFC 2047 encoded words.
//! Bodies are sent base64-encoded, so no line can ever look like a MIME boundary.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

/// Headers the `headers` input may not set: they have their own fields or define the
/// message's MIME structure.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// The most bytes of UTF-8 one encoded word carries: 45 bytes are 60 base64 characters,
/// which with `=?UTF-8?B?` and `?=` is within RFC 2047's 75-character limit.
const ENCODED_WORD_BYTES: usize = 45;

/// Builds the RFC 2822 message for an `email.send@1` input. `boundary` separates the
/// parts of a `multipart/alternative` message (when both `text` and `html` are given).
pub fn build(input: &Value, boundary: &str) -> Result<String, String> {
    let mut out = String::new();
    if let Some(from) = string(input, "from")? {
        push_header(&mut out, "From", &address(from));
    }
    let to = strings(input, "to")?;
    if to.is_empty() {
        return Err("`to` needs at least one address".into());
    }
    push_header(&mut out, "To", &addresses(&to));
    for (field, name) in [("cc", "Cc"), ("bcc", "Bcc"), ("replyTo", "Reply-To")] {
        let list = strings(input, field)?;
        if !list.is_empty() {
            push_header(&mut out, name, &addresses(&list));
        }
    }
    if let Some(subject) = string(input, "subject")? {
        push_header(&mut out, "Subject", &encode_words(&clean(subject)));
    }
    push_extra_headers(&mut out, input)?;
    out.push_str("MIME-Version: 1.0\r\n");
    match (string(input, "text")?, string(input, "html")?) {
        (None, None) => return Err("`text` or `html` is required".into()),
        (Some(text), None) => push_part(&mut out, "text/plain", text),
        (None, Some(html)) => push_part(&mut out, "text/html", html),
        (Some(text), Some(html)) => {
            out.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
            ));
            for (mime, body) in [("text/plain", text), ("text/html", html)] {
                out.push_str(&format!("--{boundary}\r\n"));
                push_part(&mut out, mime, body);
            }
            out.push_str(&format!("--{boundary}--\r\n"));
        }
    }
    Ok(out)
}

/// An optional string field.
fn string<'a>(input: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// An optional list of strings; a single string is a list of one.
fn strings<'a>(input: &'a Value, key: &str) -> Result<Vec<&'a str>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| format!("`{key}` must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be a list of strings")),
    }
}

/// The caller's extra `headers` object, each name checked and each value cleaned.
fn push_extra_headers(out: &mut String, input: &Value) -> Result<(), String> {
    let headers = match input.get("headers") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(headers)) => headers,
        Some(_) => return Err("`headers` must be an object of strings".into()),
    };
    for (name, value) in headers {
        let valid_name = !name.is_empty()
            && name.len() <= 76
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name {
            return Err(format!(
                "`headers`: `{}` is not a valid header name",
                clean(name)
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`headers`: `{name}` cannot be set there; use the dedicated field"
            ));
        }
        let value = value
            .as_str()
            .ok_or_else(|| format!("`headers`: `{name}` must be a string"))?;
        push_header(out, name, &encode_words(&clean(value)));
    }
    Ok(())
}

fn push_header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// One body part's headers and its base64 body in 76-character lines.
fn push_part(out: &mut String, mime: &str, body: &str) {
    out.push_str(&format!(
        "Content-Type: {mime}; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    let encoded = STANDARD.encode(body.as_bytes());
    for line in encoded.as_bytes().chunks(76) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
}

/// A header value without CR, LF or other control characters (tabs become spaces).
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// ASCII text as it is; anything else as RFC 2047 `=?UTF-8?B?…?=` words, folded.
fn encode_words(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > ENCODED_WORD_BYTES {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encoded_word(&chunk));
    }
    // Whitespace between adjacent encoded words is not part of the text (RFC 2047 §6.2).
    words.join("\r\n ")
}

fn encoded_word(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
}

/// One address, `a@example.com` or `Name <a@example.com>`; a non-ASCII display name is
/// encoded, the address itself is left alone.
fn address(raw: &str) -> String {
    let address = clean(raw);
    if address.is_ascii() {
        return address;
    }
    match address.rfind('<') {
        Some(open) if address.ends_with('>') => {
            let name = address[..open].trim().trim_matches('"').trim();
            if name.is_empty() {
                address[open..].to_owned()
            } else {
                format!("{} {}", encode_words(name), &address[open..])
            }
        }
        _ => address,
    }
}

fn addresses(list: &[&str]) -> String {
    list.iter()
        .map(|a| address(a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first header of a Gmail `payload` with this name (case-insensitive).
pub fn header(payload: &Value, name: &str) -> Option<String> {
    payload["headers"].as_array()?.iter().find_map(|h| {
        let matches = h["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name));
        if matches {
            h["value"].as_str().map(str::to_owned)
        } else {
            None
        }
    })
}

/// Splits an address-list header (`a@x.com, "Doe, J" <j@x.com>`) at the commas that
/// are outside quotes and angle brackets.
pub fn split_addresses(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

/// The first `text/plain` and first `text/html` bodies of a Gmail `payload`, walking
/// `parts` recursively; attachments (parts with a file name) are skipped.
pub fn bodies(payload: &Value) -> (Option<String>, Option<String>) {
    let (mut text, mut html) = (None, None);
    walk(payload, &mut text, &mut html);
    (text, html)
}

fn walk(part: &Value, text: &mut Option<String>, html: &mut Option<String>) {
    let attachment = part["filename"].as_str().is_some_and(|f| !f.is_empty());
    let mime = part["mimeType"].as_str().unwrap_or("").to_ascii_lowercase();
    let slot = match mime.as_str() {
        "text/plain" if !attachment => Some(&mut *text),
        "text/html" if !attachment => Some(&mut *html),
        _ => None,
    };
    if let Some(slot) = slot {
        if slot.is_none() {
            *slot = part["body"]["data"].as_str().and_then(decode_text);
        }
        return;
    }
    for child in part["parts"].as_array().into_iter().flatten() {
        walk(child, text, html);
    }
}

/// Decodes Gmail's base64url body data (padded or not) as UTF-8 text.
fn decode_text(data: &str) -> Option<String> {
    let normalized: String = data
        .chars()
        .filter(|c| *c != '=' && !c.is_ascii_whitespace())
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = URL_SAFE_NO_PAD.decode(normalized).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Unix milliseconds as RFC 3339 in UTC: `2024-03-01T12:30:00Z`, with `.mmm` when the
/// milliseconds are not zero.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if millis == 0 {
        format!("{time}Z")
    } else {
        format!("{time}.{millis:03}Z")
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_are_cleaned_and_encoded() {
        let raw = build(
            &json!({
                "from": "Zoë <zoe@example.com>",
                "to": ["a@example.com", "b@example.com"],
                "bcc": ["hidden@example.com"],
                "subject": "Héllo\r\nBcc: evil@example.com",
                "text": "hi",
                "headers": {"X-Tag": "a\nb"}
            }),
            "=_b",
        )
        .unwrap();
        assert!(raw.starts_with("From: =?UTF-8?B?Wm/Dqw==?= <zoe@example.com>\r\n"));
        assert!(raw.contains("To: a@example.com, b@example.com\r\n"));
        assert!(raw.contains("Bcc: hidden@example.com\r\n"));
        assert!(raw.contains("X-Tag: ab\r\n"));
        assert!(!raw.contains("\r\nBcc: evil"));
        let subject = raw.lines().find(|l| l.starts_with("Subject: ")).unwrap();
        let encoded = subject
            .trim_end_matches('\r')
            .strip_prefix("Subject: =?UTF-8?B?")
            .unwrap()
            .strip_suffix("?=")
            .unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "HélloBcc: evil@example.com");
        assert!(raw.ends_with("Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n"));
    }

    #[test]
    fn long_non_ascii_subjects_are_folded_into_short_words() {
        let subject = "é".repeat(60);
        let encoded = encode_words(&subject);
        let words: Vec<&str> = encoded.split("\r\n ").collect();
        assert_eq!(words.len(), 3);
        assert!(words.iter().all(|w| w.len() <= 75));
        let decoded: String = words
            .iter()
            .map(|w| {
                let b64 = &w["=?UTF-8?B?".len()..w.len() - 2];
                String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(decoded, subject);
    }

    #[test]
    fn text_and_html_make_multipart_alternative() {
        let raw = build(
            &json!({"to": ["a@example.com"], "text": "plain", "html": "<b>rich</b>"}),
            "=_conduit_1",
        )
        .unwrap();
        assert!(raw.contains("Content-Type: multipart/alternative; boundary=\"=_conduit_1\"\r\n"));
        assert_eq!(raw.matches("--=_conduit_1\r\n").count(), 2);
        assert!(raw.ends_with("--=_conduit_1--\r\n"));
        assert!(raw.contains("text/plain; charset=\"UTF-8\""));
        assert!(raw.contains("text/html; charset=\"UTF-8\""));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(build(&json!({"to": [], "text": "x"}), "b").is_err());
        assert!(build(&json!({"to": ["a@x.com"]}), "b").is_err());
        let reserved = json!({"to": ["a@x.com"], "text": "x", "headers": {"Content-Type": "x"}});
        assert!(build(&reserved, "b").is_err());
        let bad_name = json!({"to": ["a@x.com"], "text": "x", "headers": {"X\r\nBcc": "x"}});
        assert!(build(&bad_name, "b").is_err());
    }

    #[test]
    fn payload_bodies_are_found_recursively() {
        let payload = json!({
            "mimeType": "multipart/mixed",
            "headers": [{"name": "Subject", "value": "Hi"}, {"name": "To", "value": "\"Doe, J\" <j@x.com>, b@x.com"}],
            "parts": [
                {"mimeType": "multipart/alternative", "parts": [
                    {"mimeType": "text/plain", "body": {"data": "aMOp"}},
                    {"mimeType": "text/html", "body": {"data": "PGI-aGk8L2I-"}}
                ]},
                {"mimeType": "text/plain", "filename": "a.txt", "body": {"attachmentId": "x"}}
            ]
        });
        assert_eq!(
            bodies(&payload),
            (Some("hé".into()), Some("<b>hi</b>".into()))
        );
        assert_eq!(header(&payload, "subject").as_deref(), Some("Hi"));
        assert_eq!(
            split_addresses(&header(&payload, "To").unwrap()),
            vec!["\"Doe, J\" <j@x.com>", "b@x.com"]
        );
        let single = json!({"mimeType": "text/plain", "body": {"data": "aGk="}});
        assert_eq!(bodies(&single), (Some("hi".into()), None));
    }

    #[test]
    fn internal_dates_become_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_296_200_000), "2024-03-01T12:30:00Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
