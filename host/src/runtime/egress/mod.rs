//! The sandbox's only way out: the policy and transport behind the `http` import.
//!
//! A request leaves only if its URL's host and port match one of the connector's
//! granted hosts (exact `api.stripe.com`, wildcard `*.googleapis.com`, optional
//! `:port`; without a port only the scheme's default port).
//!
//! Egress is granted, not self-declared. The hosts a component names in its `info()`
//! are a request ([`AllowedHosts::requested`]): public host names and wildcards are
//! granted, but IP literals and `localhost` only when the operator grants them
//! ([`AllowedHosts::parse`]: `plugins.toml` or the admin API), and plain `http://` only
//! through an operator's pattern that names its port. Hostnames are resolved through
//! [`resolve`], which drops private, loopback and link-local addresses, so DNS cannot
//! redirect a connector inward. Redirects are not followed, a guest `Host` header is
//! dropped, and responses are capped.
//!
//! [`transport`] carries what the policy lets out: HTTP/1.1 on a per-thread pool of
//! keep-alive connections, each driven by the call that sends on it.

use std::net::{IpAddr, SocketAddr};

mod transport;
pub use transport::{exchange, Exchange, Failure, Target};

/// One allowed-host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-cased host, or the suffix after `*.` for a wildcard.
    host: String,
    wildcard: bool,
    port: Option<u16>,
    /// Plain `http://` may use it: an operator's grant naming its port.
    plain_http: bool,
}

/// Why a pattern string is not acceptable.
#[derive(Debug, thiserror::Error)]
#[error("invalid allowed host `{0}`")]
pub struct InvalidPattern(pub String);

impl HostPattern {
    /// Parses `host`, `*.suffix`, either with `:port`, as an operator grants it.
    pub fn parse(text: &str) -> Result<Self, InvalidPattern> {
        let invalid = || InvalidPattern(text.to_owned());
        let lowered = text.trim().to_ascii_lowercase();
        let (host, port) = match lowered.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (
                host.to_owned(),
                Some(port.parse::<u16>().map_err(|_| invalid())?),
            ),
            Some(_) => return Err(invalid()),
            None => (lowered.clone(), None),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(suffix) => (suffix.to_owned(), true),
            None => (host, false),
        };
        let valid_chars = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if host.is_empty()
            || !valid_chars
            || host.contains('*')
            || (wildcard && !host.contains('.'))
        {
            return Err(invalid());
        }
        Ok(HostPattern {
            host,
            wildcard,
            plain_http: port.is_some(),
            port,
        })
    }

    /// Whether a component may have this pattern by asking: a public host name or a
    /// wildcard, not an address or `localhost`, which only the operator can grant.
    pub fn self_grantable(&self) -> bool {
        let local = self.host == "localhost" || self.host.ends_with(".localhost");
        self.wildcard || !(local || self.host.parse::<IpAddr>().is_ok())
    }

    fn matches(&self, scheme: &str, host: &str, port: u16, default_port: u16) -> bool {
        if scheme == "http" && !self.plain_http {
            return false;
        }
        let port_ok = self.port.map_or(port == default_port, |p| p == port);
        if !port_ok {
            return false;
        }
        if self.wildcard {
            // A wildcard never matches an IP literal: addresses must be named exactly.
            host.parse::<IpAddr>().is_err()
                && host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

/// A connector's granted hosts.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    /// What a component gets for the hosts it asks for in `info()`: the patterns it
    /// may have by asking ([`HostPattern::self_grantable`]), HTTPS only, and their text.
    pub fn requested<S: AsRef<str>>(patterns: &[S]) -> (Self, Vec<String>) {
        let mut granted = (Vec::new(), Vec::new());
        for text in patterns {
            let Ok(mut pattern) = HostPattern::parse(text.as_ref()) else {
                continue;
            };
            if pattern.self_grantable() {
                pattern.plain_http = false;
                granted.0.push(pattern);
                granted.1.push(text.as_ref().to_owned());
            }
        }
        (AllowedHosts(granted.0), granted.1)
    }

    /// Parses every pattern of an operator's grant.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, InvalidPattern> {
        patterns
            .iter()
            .map(|p| HostPattern::parse(p.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }

    /// Checks a URL against the patterns and the private-address rule; `Err` is the
    /// reason given to the guest.
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(format!("scheme `{scheme}` is not allowed"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(0);
        let default_port = if scheme == "https" { 443 } else { 80 };
        if !self
            .0
            .iter()
            .any(|p| p.matches(scheme, &host, port, default_port))
        {
            return Err(format!(
                "{scheme}://{host}:{port} is not granted to the connector (plain http needs an operator's grant naming the port)"
            ));
        }
        // An IP literal only matches an exact pattern naming it, which is the explicit
        // allowance for a private address; still refuse the unspecified address.
        if let Ok(ip) = host.parse::<IpAddr>() {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(format!("address {ip} is not allowed"));
            }
        }
        Ok(())
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// carrier-grade NAT, unique-local, unspecified, broadcast or multicast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The error the resolver gives when a name resolves only to non-public addresses.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to private, loopback or link-local addresses")]
pub struct PrivateAddress(pub String);

/// Why a host name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address it resolves to is private, loopback or link-local.
    #[error(transparent)]
    Private(#[from] PrivateAddress),
    /// The lookup itself failed.
    #[error("name lookup failed")]
    Lookup(#[source] std::io::Error),
}

/// DNS for outbound requests: drops non-public addresses, except for `localhost`,
/// which a connector reaches only when an allowed host names it exactly. IP literals
/// never come here: they are checked against the grant and connected to as they are.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(ResolveError::Lookup)?
        .collect();
    let explicit = host.eq_ignore_ascii_case("localhost");
    let kept: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| explicit || is_public(a.ip()))
        .collect();
    if kept.is_empty() {
        return Err(PrivateAddress(host.to_owned()).into());
    }
    Ok(kept)
}

/// Request headers a guest may not set: the host derives them from the URL and body.
pub fn is_forbidden_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "upgrade"
            | "te"
            | "trailer"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str], url: &str) -> Result<(), String> {
        AllowedHosts::parse(patterns)
            .unwrap()
            .check(&url.parse().unwrap())
    }

    #[test]
    fn exact_host_and_default_port() {
        assert!(allowed(&["api.stripe.com"], "https://api.stripe.com/v1/x").is_ok());
        assert!(allowed(&["api.stripe.com"], "https://API.Stripe.com/v1/x").is_ok());
        assert!(allowed(&["api.stripe.com"], "https://api.stripe.com:8443/").is_err());
        assert!(allowed(&["api.stripe.com"], "https://evil.com/?api.stripe.com").is_err());
        assert!(allowed(&["api.stripe.com"], "https://api.stripe.com.evil.com/").is_err());
        assert!(allowed(&["api.stripe.com"], "ftp://api.stripe.com/").is_err());
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = ["*.googleapis.com"];
        assert!(allowed(&p, "https://gmail.googleapis.com/").is_ok());
        assert!(allowed(&p, "https://a.b.googleapis.com/").is_ok());
        assert!(allowed(&p, "https://googleapis.com/").is_err());
        assert!(allowed(&p, "https://evilgoogleapis.com/").is_err());
    }

    #[test]
    fn ports_and_ip_literals_must_be_named() {
        assert!(allowed(&["127.0.0.1:9000"], "http://127.0.0.1:9000/x").is_ok());
        assert!(allowed(&["127.0.0.1:9000"], "http://127.0.0.1:9001/x").is_err());
        assert!(allowed(&["*.0.0.1"], "http://127.0.0.1/").is_err());
        assert!(allowed(&["example.com"], "http://169.254.169.254/latest/meta-data").is_err());
        assert!(
            HostPattern::parse("[::1]:80").is_err(),
            "ipv6 literals are not accepted as patterns"
        );
    }

    #[test]
    fn a_component_asking_for_addresses_or_localhost_gets_only_public_names() {
        let asked = [
            "api.example.com",
            "*.example.org",
            "127.0.0.1:47831",
            "169.254.169.254",
            "localhost:8080",
            "db.localhost",
            "not a host",
        ];
        let (granted, text) = AllowedHosts::requested(&asked);
        assert_eq!(text, ["api.example.com", "*.example.org"]);
        let check = |url: &str| granted.check(&url.parse().unwrap());
        assert!(check("https://api.example.com/").is_ok());
        assert!(check("https://x.example.org/").is_ok());
        assert!(check("http://127.0.0.1:47831/").is_err());
        assert!(check("http://169.254.169.254/latest/meta-data").is_err());
        assert!(check("http://localhost:8080/").is_err());
        // Asked-for names are HTTPS only, even with a port named.
        let (granted, _) = AllowedHosts::requested(&["api.example.com:8080"]);
        assert!(granted
            .check(&"http://api.example.com:8080/".parse().unwrap())
            .is_err());
        assert!(granted
            .check(&"https://api.example.com:8080/".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn plain_http_only_where_the_grant_names_the_port() {
        assert!(allowed(&["api.example.com"], "http://api.example.com/").is_err());
        assert!(allowed(&["api.example.com:80"], "http://api.example.com/").is_ok());
        assert!(allowed(&["localhost:9000"], "http://localhost:9000/").is_ok());
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in ["", "*", "*.com:x", "a b", "*.*.com", "http://x.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "151.101.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
