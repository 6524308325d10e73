//! Token lifecycle unit tests, with a test double for the connector's refresh.

use super::*;
use crate::credentials::vault::Key;
use crate::domain::OwnershipMode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A token endpoint that rotates the refresh token on every use and rejects reuse,
/// as Google and others can.
struct RotatingProvider {
    calls: AtomicUsize,
    current: Mutex<String>,
    outcome: Mutex<Option<RefreshError>>,
    /// Expiry of issued access tokens, relative to now.
    lifetime_ms: u64,
    rotate: bool,
}

impl RotatingProvider {
    fn new(first_refresh_token: &str, lifetime_ms: u64, rotate: bool) -> Arc<Self> {
        Arc::new(RotatingProvider {
            calls: AtomicUsize::new(0),
            current: Mutex::new(first_refresh_token.into()),
            outcome: Mutex::new(None),
            lifetime_ms,
            rotate,
        })
    }
}

impl Refresher for RotatingProvider {
    fn refresh<'a>(
        &'a self,
        _c: &'a Connection,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<SecretFields, RefreshError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(e) = self.outcome.lock().unwrap().clone() {
                return Err(e);
            }
            let mut current = self.current.lock().unwrap();
            if *current != refresh_token {
                return Err(RefreshError::Rejected("invalid_grant: token reused".into()));
            }
            let mut fresh = SecretFields {
                access_token: Some(format!("access-{n}").into()),
                expires_at: Some(now_ms() + self.lifetime_ms),
                ..SecretFields::default()
            };
            if self.rotate {
                *current = format!("refresh-{n}");
                fresh.refresh_token = Some(current.clone().into());
            }
            Ok(fresh)
        })
    }
}

fn setup(provider: Arc<RotatingProvider>, expires_in_ms: i64) -> (Tokens, Connection) {
    let stores = Stores::temporary().unwrap();
    let vault = Arc::new(Vault::load(stores.keyring.clone(), Key::generate()).unwrap());
    let tokens = Tokens::new(&stores, vault, Notifier::log_only())
        .with_refresher(provider, RefreshLeads::default());
    let connection = Connection::fixture("conn_1", OwnershipMode::Managed);
    stores.connections.put_connection(&connection).unwrap();
    let secret = SecretFields {
        access_token: Some("access-0".into()),
        refresh_token: Some("refresh-0".into()),
        expires_at: Some((now_ms() as i64 + expires_in_ms) as u64),
        ..SecretFields::default()
    };
    tokens
        .put(&connection, CredentialKind::Oauth2, &secret)
        .unwrap();
    (tokens, connection)
}

const HOUR: i64 = 3_600_000;

/// `n` vends of the same connection running at once.
fn spawn_vends(
    tokens: &Tokens,
    connection: &Connection,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<SecretFields, Error>>> {
    (0..n)
        .map(|_| {
            let (tokens, connection) = (tokens.clone(), connection.clone());
            tokio::spawn(async move { tokens.vend(&connection).await })
        })
        .collect()
}

#[tokio::test]
async fn a_warm_vend_makes_no_provider_call() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    let (tokens, connection) = setup(provider.clone(), HOUR);
    let secret = tokens.vend(&connection).await.unwrap();
    assert_eq!(secret.access_token(), Some("access-0"));
    assert_eq!(provider.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_vend_inside_the_lead_refreshes_once_and_persists_the_rotation() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    let (tokens, connection) = setup(provider.clone(), 60_000);
    let secret = tokens.vend(&connection).await.unwrap();
    assert_eq!(secret.access_token(), Some("access-1"));
    assert_eq!(secret.refresh_token(), Some("refresh-1"));
    let again = tokens.vend(&connection).await.unwrap();
    assert_eq!(again.access_token(), Some("access-1"));
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    let stored = tokens
        .credentials
        .credential(&connection.id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_vends_share_one_refresh() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    let (tokens, connection) = setup(provider.clone(), 1_000);
    let vends = spawn_vends(&tokens, &connection, 200);
    for vend in vends {
        let secret = vend.await.unwrap().unwrap();
        assert_eq!(secret.access_token(), Some("access-1"));
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_refresh_token_is_never_used_twice() {
    // Issued tokens are due at once, so every round refreshes again.
    let provider = RotatingProvider::new("refresh-0", 0, true);
    let (tokens, connection) = setup(provider.clone(), 0);
    for round in 1..=50 {
        let vends = spawn_vends(&tokens, &connection, 8);
        for vend in vends {
            vend.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let status = tokens
        .connections
        .connection(&connection.id)
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status, ConnectionStatus::Active);
    assert!(provider.calls.load(Ordering::SeqCst) >= 50);
}

#[tokio::test]
async fn a_response_without_a_refresh_token_keeps_the_old_one() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, false);
    let (tokens, connection) = setup(provider, 1_000);
    let secret = tokens.vend(&connection).await.unwrap();
    assert_eq!(secret.access_token(), Some("access-1"));
    assert_eq!(secret.refresh_token(), Some("refresh-0"));
}

#[tokio::test]
async fn a_rejected_refresh_token_flips_the_connection() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    *provider.outcome.lock().unwrap() = Some(RefreshError::Rejected("invalid_grant".into()));
    let (tokens, connection) = setup(provider.clone(), 1_000);
    assert!(matches!(
        tokens.vend(&connection).await,
        Err(Error::NeedsReauth)
    ));
    let stored = tokens
        .connections
        .connection(&connection.id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauth);
    assert!(matches!(
        tokens.vend(&stored).await,
        Err(Error::NeedsReauth)
    ));
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_transient_failure_never_flips_the_connection() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    *provider.outcome.lock().unwrap() = Some(RefreshError::Transient("503".into()));
    let (tokens, connection) = setup(provider.clone(), 60_000);
    // Still valid for a minute: the old token is handed out.
    let secret = tokens.vend(&connection).await.unwrap();
    assert_eq!(secret.access_token(), Some("access-0"));
    let (expired, expired_connection) = setup(provider, -1_000);
    assert!(matches!(
        expired.vend(&expired_connection).await,
        Err(Error::RefreshFailed(_))
    ));
    for (tokens, connection) in [(&tokens, &connection), (&expired, &expired_connection)] {
        let status = tokens
            .connections
            .connection(&connection.id)
            .unwrap()
            .unwrap()
            .status;
        assert_eq!(status, ConnectionStatus::Active);
    }
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let policy = BackoffPolicy {
        base: Duration::from_secs(10),
        max: Duration::from_secs(60),
    };
    for (failures, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (30, 60)] {
        let delay = policy.delay(failures);
        let full = Duration::from_secs(full);
        assert!(
            delay >= full / 2 && delay <= full,
            "failure {failures}: {delay:?}"
        );
    }
}

#[tokio::test]
async fn vends_during_a_backoff_serve_the_valid_token_without_calling_the_provider() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    *provider.outcome.lock().unwrap() = Some(RefreshError::Transient("503".into()));
    let (tokens, connection) = setup(provider.clone(), 60_000);
    for _ in 0..20 {
        let secret = tokens.vend(&connection).await.unwrap();
        assert_eq!(secret.access_token(), Some("access-0"));
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    assert!(tokens.backing_off(&connection.id, now_ms()));
}

#[tokio::test]
async fn a_stale_write_never_overwrites_a_newer_credential() {
    let provider = RotatingProvider::new("refresh-0", HOUR as u64, true);
    let (tokens, connection) = setup(provider, HOUR);
    let v1 = tokens
        .credentials
        .credential(&connection.id)
        .unwrap()
        .unwrap();
    let newer = SecretFields {
        api_key: Some("tenant-put-this".into()),
        ..SecretFields::default()
    };
    tokens
        .put(&connection, CredentialKind::Oauth2, &newer)
        .unwrap();
    let stale = tokens.seal(
        &connection,
        CredentialKind::Oauth2,
        v1.version + 1,
        &SecretFields::default(),
    );
    assert!(!tokens
        .credentials
        .replace_credential(&connection.id, v1.version, &stale)
        .unwrap());
    let kept = tokens.vend(&connection).await.unwrap();
    assert_eq!(kept.api_key(), Some("tenant-put-this"));
}
