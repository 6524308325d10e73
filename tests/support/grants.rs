//! What a fake OAuth provider has handed out (Slack's, GitHub's): live access and
//! refresh tokens, and single-use authorization codes with the redirect URI each was
//! issued for. Refresh tokens rotate: redeeming one kills it.

use std::collections::HashSet;

#[derive(Default)]
pub struct Grants {
    pub access: HashSet<String>,
    pub refresh: HashSet<String>,
    codes: Vec<(String, String)>,
    issued: u64,
}

impl Grants {
    /// A new code for `redirect_uri`, `prefix` then a number.
    pub fn issue_code(&mut self, prefix: &str, redirect_uri: &str) -> String {
        self.issued += 1;
        let code = format!("{prefix}{:016}", self.issued);
        self.codes.push((code.clone(), redirect_uri.into()));
        code
    }

    /// Uses `code` up; the redirect URI it was issued for, or `None` when it is unknown.
    pub fn redeem_code(&mut self, code: &str) -> Option<String> {
        let at = self.codes.iter().position(|(c, _)| c == code)?;
        Some(self.codes.remove(at).1)
    }

    /// Uses `token` up; whether it was live.
    pub fn redeem_refresh(&mut self, token: &str) -> bool {
        self.refresh.remove(token)
    }

    /// A new live access token and refresh token, each `prefix` then a number.
    pub fn mint(&mut self, access_prefix: &str, refresh_prefix: &str) -> (String, String) {
        self.issued += 1;
        let access = format!("{access_prefix}{:020}", self.issued);
        let refresh = format!("{refresh_prefix}{:020}", self.issued);
        self.access.insert(access.clone());
        self.refresh.insert(refresh.clone());
        (access, refresh)
    }
}
