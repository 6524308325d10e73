//! The redactor: every string bound for an audit record, a log line or an error passes
//! through one holding the call's secret values.

use std::sync::Arc;
use zeroize::Zeroizing;

/// Replaces every occurrence of known secret values with `<redacted>`.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<Zeroizing<String>>>,
}

/// Values shorter than this are not redacted by value (they would mangle ordinary text);
/// real keys and tokens are far longer.
const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    /// A redactor for these secret values.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<Zeroizing<String>> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .map(|s| Zeroizing::new(s.to_owned()))
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// A redactor for the secrets of both.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        if self.secrets.is_empty() {
            return other.clone();
        }
        let mut secrets: Vec<Zeroizing<String>> = self
            .secrets
            .iter()
            .chain(other.secrets.iter())
            .cloned()
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}
