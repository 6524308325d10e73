//! The store suite: every aggregate exercised through its trait, each test once over
//! sled and once over PostgreSQL (`on_sled::*`, `on_postgres::*`).

use super::*;
use crate::domain::{
    AuditRecord, Connection, ConnectionStatus, CredentialKind, OwnershipMode, SealedSecret, Tenant,
};
use crate::domain::{ConfigStatus, Environment, TenantConfig};

fn draft(tenant: &str) -> TenantConfig {
    TenantConfig::draft_fixture(tenant)
}

fn versions_count_up_and_publishing_archives_the_previous_one(place: &Place) {
    let stores = place.open();
    let store = &stores.configs;
    let (mut one, mut two) = (draft("acme"), draft("acme"));
    store.insert_config_version(&mut one).unwrap();
    store.insert_config_version(&mut two).unwrap();
    let mut other = draft("globex");
    store.insert_config_version(&mut other).unwrap();
    assert_eq!(
        (one.meta.version, two.meta.version, other.meta.version),
        (1, 2, 1)
    );

    let revision = stores.revisions.current("acme").unwrap();
    let env = Environment::Production;
    store.publish("acme", "app", env, 1, 5).unwrap().unwrap();
    assert!(
        stores.revisions.current("acme").unwrap() > revision,
        "publication invalidates caches"
    );
    store.publish("acme", "app", env, 2, 6).unwrap().unwrap();
    let status = |v| {
        store
            .config("acme", "app", env, v)
            .unwrap()
            .unwrap()
            .meta
            .status
    };
    assert_eq!(
        (status(1), status(2)),
        (ConfigStatus::Archived, ConfigStatus::Published)
    );
    assert_eq!(
        store
            .published_config("acme", "app", env)
            .unwrap()
            .unwrap()
            .meta
            .version,
        2
    );
    assert!(matches!(
        store.publish("acme", "app", env, 1, 7).unwrap(),
        Err(PublishRefusal::Archived)
    ));
    assert!(matches!(
        store.publish("acme", "app", env, 9, 7).unwrap(),
        Err(PublishRefusal::Missing)
    ));
    assert!(store
        .published_config("globex", "app", env)
        .unwrap()
        .is_none());
}

fn quotas_count_to_their_limit_per_day(place: &Place) {
    let stores = place.open();
    let store = &stores.quotas;
    assert!(store.take_quota("c", 1, 2).unwrap());
    assert!(store.take_quota("c", 1, 2).unwrap());
    assert!(!store.take_quota("c", 1, 2).unwrap());
    assert!(store.take_quota("c", 2, 2).unwrap(), "a new day");
    assert!(store.take_quota("d", 1, 2).unwrap(), "another connection");
}

/// Where a backend under test keeps its data: opening it again gives the same data.
enum Place {
    Sled(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Place {
    fn sled() -> Self {
        Place::Sled(tempfile::tempdir().unwrap())
    }

    /// A schema of its own in the test database (`CONDUIT_TEST_DATABASE_URL`, which
    /// `cargo xtask test` sets after starting a server). Without one the PostgreSQL
    /// half is skipped, unless `CONDUIT_REQUIRE_POSTGRES` says it must run (CI).
    fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("CONDUIT_TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CONDUIT_REQUIRE_POSTGRES").is_none(),
                "CONDUIT_REQUIRE_POSTGRES is set but CONDUIT_TEST_DATABASE_URL is not"
            );
            eprintln!("skipped: no CONDUIT_TEST_DATABASE_URL");
            return None;
        };
        let schema = format!("store_{}", uuid::Uuid::new_v4().simple());
        Some(Place::Postgres { url, schema })
    }

    fn open(&self) -> Stores {
        match self {
            Place::Sled(dir) => Stores::open(dir.path()).unwrap(),
            Place::Postgres { url, schema } => {
                Stores::postgres(PgStore::connect_in(url, Some(schema)).unwrap()).unwrap()
            }
        }
    }
}

/// Each test of the suite, once per backend.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod on_sled {
            $(#[test] fn $test() { super::$test(&super::Place::sled()) })*
        }
        mod on_postgres {
            $(#[test] fn $test() {
                if let Some(place) = super::Place::postgres() { super::$test(&place) }
            })*
        }
    };
}

on_every_backend!(
    versions_count_up_and_publishing_archives_the_previous_one,
    quotas_count_to_their_limit_per_day,
    tenants_are_created_once_and_found_by_token_hash,
    connections_are_listed_by_owner_and_change_status_once,
    credentials_swap_by_version_and_are_due_by_expiry,
    a_reindexed_credential_waits_at_its_new_place_until_a_new_one_is_written,
    deleting_a_connection_drops_its_credential_and_index_entry,
    oauth_states_are_single_use_and_purged_at_expiry,
    pending_oauth_states_are_counted_per_tenant_and_replaced_by_value,
    the_outbox_keeps_order_across_a_reopen,
    only_unpublished_config_versions_are_discarded,
    audit_pages_are_per_tenant_newest_first_and_purged_by_age,
    idempotent_results_are_per_tenant_and_purged_by_age,
    the_keyring_is_saved_and_loaded_whole,
    the_first_keyring_created_wins,
    refresh_leases_are_held_one_at_a_time_and_fence_late_writes,
    every_write_is_seen_by_the_next_read,
);

fn sealed(vault_key: &str) -> SealedSecret {
    // The store never opens a seal: any well-formed one will do.
    serde_json::from_value(serde_json::json!({
        "keyId": vault_key,
        "wrappedKey": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "secret": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    }))
    .unwrap()
}

fn credential(version: u64, expires_at: Option<UnixMs>) -> StoredCredential {
    StoredCredential {
        credential_id: "cred_1".into(),
        version,
        kind: CredentialKind::Oauth2,
        expires_at,
        refreshable: true,
        sealed: sealed("kek_1"),
        updated_at: 0,
        index_at: None,
    }
}

fn tenants_are_created_once_and_found_by_token_hash(place: &Place) {
    let stores = place.open();
    let tenant = Tenant {
        id: "acme".into(),
        created_at: 1,
    };
    stores.tenants.create_tenant(&tenant, b"hash-1").unwrap();
    assert!(matches!(
        stores.tenants.create_tenant(&tenant, b"hash-2"),
        Err(Error::Conflict)
    ));
    assert_eq!(
        stores.tenants.tenant_by_token_hash(b"hash-1").unwrap(),
        Some("acme".into())
    );
    assert_eq!(
        stores.tenants.tenant_by_token_hash(b"hash-2").unwrap(),
        None
    );
}

fn connections_are_listed_by_owner_and_change_status_once(place: &Place) {
    let stores = place.open();
    let mut mine = Connection::fixture("conn_a", OwnershipMode::Byok);
    mine.tenant_id = "acme".into();
    let mut theirs = Connection::fixture("conn_b", OwnershipMode::Byok);
    theirs.tenant_id = "globex".into();
    let before = stores.revisions.current("acme").unwrap();
    stores.connections.put_connection(&mine).unwrap();
    stores.connections.put_connection(&theirs).unwrap();
    assert!(
        stores.revisions.current("acme").unwrap() > before,
        "a write bumps the revision"
    );
    let listed = stores.connections.connections_of("acme").unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["conn_a"]
    );

    let (active, reauth) = (ConnectionStatus::Active, ConnectionStatus::NeedsReauth);
    let flipped = stores
        .connections
        .transition_status("conn_a", active, reauth, Some("revoked"))
        .unwrap()
        .unwrap();
    assert_eq!(flipped.status, reauth);
    assert_eq!(flipped.status_reason.as_deref(), Some("revoked"));
    assert!(
        stores
            .connections
            .transition_status("conn_a", active, reauth, None)
            .unwrap()
            .is_none(),
        "the second flip finds it moved already"
    );
    stores.connections.delete_connection(&mine).unwrap();
    assert!(stores.connections.connection("conn_a").unwrap().is_none());
    assert!(stores.connections.connection("conn_b").unwrap().is_some());
}

fn credentials_swap_by_version_and_are_due_by_expiry(place: &Place) {
    let stores = place.open();
    let store = &stores.credentials;
    store
        .put_credential("conn_late", &credential(1, Some(5_000)))
        .unwrap();
    store
        .put_credential("conn_soon", &credential(1, Some(1_000)))
        .unwrap();
    let mut static_key = credential(1, None);
    static_key.refreshable = false;
    store.put_credential("conn_key", &static_key).unwrap();
    assert_eq!(
        store.due(10_000, 10).unwrap(),
        vec![
            (1_000, "conn_soon".to_owned()),
            (5_000, "conn_late".to_owned())
        ],
        "soonest first, never a credential that cannot refresh"
    );
    assert_eq!(store.due(2_000, 10).unwrap().len(), 1);
    assert_eq!(store.due(10_000, 1).unwrap().len(), 1, "at most `limit`");

    // Compare-and-swap: the stale writer loses, and the index follows the winner.
    assert!(store
        .replace_credential("conn_soon", 1, &credential(2, Some(9_000)))
        .unwrap());
    assert!(!store
        .replace_credential("conn_soon", 1, &credential(2, Some(1)))
        .unwrap());
    assert_eq!(store.credential("conn_soon").unwrap().unwrap().version, 2);
    assert_eq!(
        store.due(10_000, 10).unwrap(),
        vec![
            (5_000, "conn_late".to_owned()),
            (9_000, "conn_soon".to_owned())
        ]
    );
    store.unindex_expiry(5_000, "conn_late").unwrap();
    assert_eq!(store.due(10_000, 10).unwrap().len(), 1);
    assert_eq!(store.all_credentials().count(), 3);
}

fn a_reindexed_credential_waits_at_its_new_place_until_a_new_one_is_written(place: &Place) {
    let stores = place.open();
    let store = &stores.credentials;
    store
        .put_credential("conn_a", &credential(1, Some(1_000)))
        .unwrap();
    assert!(
        !store.reindex_expiry("conn_a", 999, 50_000).unwrap(),
        "not there"
    );
    assert!(store.reindex_expiry("conn_a", 1_000, 50_000).unwrap());
    assert_eq!(store.due(10_000, 10).unwrap(), vec![], "out of the window");
    assert_eq!(
        store.due(60_000, 10).unwrap(),
        vec![(50_000, "conn_a".to_owned())]
    );
    let moved = store.credential("conn_a").unwrap().unwrap();
    assert_eq!(
        (moved.version, moved.expires_at),
        (1, Some(1_000)),
        "unchanged"
    );
    // A new credential indexes itself at its expiry, and leaves nothing behind.
    assert!(store
        .replace_credential("conn_a", 1, &credential(2, Some(2_000)))
        .unwrap());
    assert_eq!(
        store.due(60_000, 10).unwrap(),
        vec![(2_000, "conn_a".to_owned())]
    );
}

fn deleting_a_connection_drops_its_credential_and_index_entry(place: &Place) {
    let stores = place.open();
    let connection = Connection::fixture("conn_a", OwnershipMode::Byok);
    stores.connections.put_connection(&connection).unwrap();
    stores
        .credentials
        .put_credential("conn_a", &credential(1, Some(1_000)))
        .unwrap();
    stores.connections.delete_connection(&connection).unwrap();
    assert!(stores.credentials.credential("conn_a").unwrap().is_none());
    assert!(stores.credentials.due(u64::MAX - 1, 10).unwrap().is_empty());
}

fn oauth_states_are_single_use_and_purged_at_expiry(place: &Place) {
    let stores = place.open();
    let state = |expires_at| OauthState {
        tenant_id: "acme".into(),
        connection_id: "conn_a".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_verifier: None,
        expires_at,
    };
    stores.oauth.put_oauth_state(b"s1", &state(100)).unwrap();
    stores.oauth.put_oauth_state(b"s2", &state(10)).unwrap();
    assert_eq!(
        stores.oauth.take_oauth_state(b"s1").unwrap(),
        Some(state(100))
    );
    assert_eq!(
        stores.oauth.take_oauth_state(b"s1").unwrap(),
        None,
        "single use"
    );
    assert_eq!(stores.oauth.purge_oauth_states(50).unwrap(), 1);
    assert_eq!(stores.oauth.take_oauth_state(b"s2").unwrap(), None);

    let client = StoredClient {
        credential_id: "cli_1".into(),
        sealed: sealed("kek_1"),
    };
    stores.oauth.put_oauth_client("conn_a", &client).unwrap();
    let next = StoredClient {
        credential_id: "cli_1".into(),
        sealed: sealed("kek_2"),
    };
    assert!(stores
        .oauth
        .replace_oauth_client("conn_a", &client, &next)
        .unwrap());
    assert!(!stores
        .oauth
        .replace_oauth_client("conn_a", &client, &next)
        .unwrap());
    assert_eq!(stores.oauth.oauth_client("conn_a").unwrap(), Some(next));
}

fn pending_oauth_states_are_counted_per_tenant_and_replaced_by_value(place: &Place) {
    let stores = place.open();
    let state = |tenant: &str, expires_at| OauthState {
        tenant_id: tenant.into(),
        connection_id: "conn_a".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_verifier: Some(sealed("kek_1")),
        expires_at,
    };
    let oauth = &stores.oauth;
    oauth.put_oauth_state(b"a1", &state("acme", 100)).unwrap();
    oauth.put_oauth_state(b"a2", &state("acme", 10)).unwrap();
    oauth.put_oauth_state(b"g1", &state("globex", 100)).unwrap();
    assert_eq!(
        oauth.count_oauth_states_of("acme", 50).unwrap(),
        1,
        "one expired"
    );
    assert_eq!(oauth.count_oauth_states_of("acme", 5).unwrap(), 2);
    assert_eq!(
        oauth.count_oauth_states_of("acm", 5).unwrap(),
        0,
        "no prefix match"
    );
    oauth.take_oauth_state(b"a1").unwrap();
    assert_eq!(oauth.count_oauth_states_of("acme", 5).unwrap(), 1);
    oauth.purge_oauth_states(50).unwrap();
    assert_eq!(
        oauth.count_oauth_states_of("acme", 0).unwrap(),
        0,
        "purged too"
    );

    let all: Vec<_> = oauth.all_oauth_states().collect::<Result<_>>().unwrap();
    assert_eq!(all, vec![(b"g1".to_vec(), state("globex", 100))]);
    let mut next = state("globex", 100);
    next.code_verifier = Some(sealed("kek_2"));
    assert!(oauth
        .replace_oauth_state(b"g1", &state("globex", 100), &next)
        .unwrap());
    assert!(!oauth
        .replace_oauth_state(b"g1", &state("globex", 100), &next)
        .unwrap());
    oauth.take_oauth_state(b"g1").unwrap();
    assert!(
        !oauth.replace_oauth_state(b"g1", &next, &next).unwrap(),
        "taken"
    );
}

fn the_outbox_keeps_order_across_a_reopen(place: &Place) {
    let first = {
        let stores = place.open();
        let a = stores.outbox.enqueue("conn_a", 1, b"one").unwrap();
        stores.outbox.enqueue("conn_b", 2, b"two").unwrap();
        stores.outbox.enqueue("conn_a", 3, b"three").unwrap();
        stores.outbox.remove(a).unwrap();
        a
    };
    let stores = place.open();
    let pending = stores.outbox.pending(10).unwrap();
    let bodies: Vec<&[u8]> = pending.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"two"[..], &b"three"[..]]);
    assert!(pending.iter().all(|e| e.sequence > first));
    assert_eq!(stores.outbox.backlog(), 2);
    // Sequences keep growing after a reopen.
    let next = stores.outbox.enqueue("conn_c", 4, b"four").unwrap();
    assert!(next > pending[1].sequence);
}

fn only_unpublished_config_versions_are_discarded(place: &Place) {
    let stores = place.open();
    let store = &stores.configs;
    let env = Environment::Production;
    let (mut one, mut two) = (draft("acme"), draft("acme"));
    store.insert_config_version(&mut one).unwrap();
    store.insert_config_version(&mut two).unwrap();
    store.publish("acme", "app", env, 1, 5).unwrap().unwrap();
    assert!(matches!(
        store.discard_config("acme", "app", env, 1),
        Err(Error::Conflict)
    ));
    assert!(
        !store.discard_config("globex", "app", env, 2).unwrap(),
        "not theirs"
    );
    assert!(store.discard_config("acme", "app", env, 2).unwrap());
    assert!(store.config("acme", "app", env, 2).unwrap().is_none());
    assert!(!store.discard_config("acme", "app", env, 2).unwrap());
}

fn audit_pages_are_per_tenant_newest_first_and_purged_by_age(place: &Place) {
    let stores = place.open();
    let record = |id: &str, tenant: &str, time| AuditRecord {
        id: id.into(),
        time,
        tenant_id: tenant.into(),
        capability: "email.send".into(),
        ..AuditRecord::default()
    };
    stores
        .audit
        .append(&[
            record("a", "acme", 1),
            record("b", "acme", 2),
            record("c", "globex", 3),
        ])
        .unwrap();
    let query = AuditQuery {
        limit: 1,
        ..AuditQuery::default()
    };
    let (first, cursor) = stores.audit.page("acme", &query).unwrap();
    assert_eq!(
        first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let next = AuditQuery {
        limit: 1,
        cursor,
        ..AuditQuery::default()
    };
    let (second, _) = stores.audit.page("acme", &next).unwrap();
    assert_eq!(
        second.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(stores.audit.purge(2, 100).unwrap(), 1);
    let all = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(stores.audit.page("acme", &all).unwrap().0.len(), 1);
    assert_eq!(stores.audit.page("globex", &all).unwrap().0.len(), 1);
}

fn refresh_leases_are_held_one_at_a_time_and_fence_late_writes(place: &Place) {
    let stores = place.open();
    let (store, leases) = (&stores.credentials, &stores.leases);
    let lease = refresh_lease("conn_a");
    store
        .put_credential("conn_a", &credential(1, Some(50)))
        .unwrap();
    let first = leases.take_lease(&lease, 100, 1_000).unwrap().unwrap();
    assert_eq!(leases.take_lease(&lease, 500, 1_000).unwrap(), None, "held");
    assert!(
        leases
            .take_lease("refresh:conn_b", 500, 1_000)
            .unwrap()
            .is_some(),
        "leases are per connection"
    );
    // The holder outlives its lease: another takes it over, and the late write of the
    // first holder is refused even though the version it read is still current.
    let second = leases.take_lease(&lease, 1_100, 1_000).unwrap().unwrap();
    assert!(second > first, "generations grow");
    assert!(!store
        .replace_credential_fenced("conn_a", 1, first, &credential(2, Some(60)))
        .unwrap());
    // Releasing a lease taken over is a no-op; the current holder writes.
    leases.release_lease(&lease, first).unwrap();
    assert_eq!(leases.take_lease(&lease, 1_200, 1_000).unwrap(), None);
    assert!(store
        .replace_credential_fenced("conn_a", 1, second, &credential(2, Some(70)))
        .unwrap());
    assert_eq!(
        store.credential("conn_a").unwrap().unwrap().expires_at,
        Some(70)
    );
    leases.release_lease(&lease, second).unwrap();
    assert!(leases.take_lease(&lease, 1_300, 1_000).unwrap() > Some(second));
}

/// Each read below is made once before the write it checks, so a backend that keeps
/// reads in memory (sled's) is held to forgetting what every write changed.
fn every_write_is_seen_by_the_next_read(place: &Place) {
    let stores = place.open();
    let (active, reauth) = (ConnectionStatus::Active, ConnectionStatus::NeedsReauth);
    let read = |id: &str| stores.connections.connection(id).unwrap();

    let mut connection = Connection::fixture("conn_w", OwnershipMode::Byok);
    assert!(read("conn_w").is_none());
    stores.connections.put_connection(&connection).unwrap();
    assert_eq!(read("conn_w").unwrap().status, active);
    stores
        .connections
        .transition_status("conn_w", active, reauth, Some("revoked"))
        .unwrap();
    assert_eq!(read("conn_w").unwrap().status, reauth);
    connection.status = active;
    connection.external_account_id = Some("acct_2".into());
    stores.connections.put_connection(&connection).unwrap();
    let updated = read("conn_w").unwrap();
    assert_eq!(
        (updated.status, updated.external_account_id.as_deref()),
        (active, Some("acct_2"))
    );

    let credentials = &stores.credentials;
    let version = |id: &str| credentials.credential(id).unwrap().map(|c| c.version);
    assert_eq!(version("conn_w"), None);
    credentials
        .put_credential("conn_w", &credential(1, Some(1_000)))
        .unwrap();
    assert_eq!(version("conn_w"), Some(1));
    assert!(credentials
        .replace_credential("conn_w", 1, &credential(2, Some(2_000)))
        .unwrap());
    assert_eq!(version("conn_w"), Some(2));
    assert!(credentials.reindex_expiry("conn_w", 2_000, 9_000).unwrap());
    assert_eq!(
        credentials.credential("conn_w").unwrap().unwrap().index_at,
        Some(9_000)
    );
    let lease = stores
        .leases
        .take_lease(&refresh_lease("conn_w"), 100, 1_000)
        .unwrap()
        .unwrap();
    assert!(credentials
        .replace_credential_fenced("conn_w", 2, lease, &credential(3, Some(3_000)))
        .unwrap());
    assert_eq!(version("conn_w"), Some(3));
    credentials
        .import_credentials(&[("conn_w", &credential(4, None))])
        .unwrap();
    assert_eq!(version("conn_w"), Some(4));
    stores.connections.delete_connection(&connection).unwrap();
    assert!(read("conn_w").is_none());
    assert_eq!(version("conn_w"), None);

    assert_eq!(
        stores.tenants.tenant_by_token_hash(b"hash-w").unwrap(),
        None
    );
    let tenant = Tenant {
        id: "wile".into(),
        created_at: 1,
    };
    stores.tenants.create_tenant(&tenant, b"hash-w").unwrap();
    assert_eq!(
        stores.tenants.tenant_by_token_hash(b"hash-w").unwrap(),
        Some("wile".into())
    );
}

fn the_first_keyring_created_wins(place: &Place) {
    let stores = place.open();
    assert_eq!(stores.keyring.create(b"first").unwrap(), None);
    assert_eq!(
        stores.keyring.create(b"second").unwrap().as_deref(),
        Some(&b"first"[..]),
        "a second creator gets the first keyring"
    );
    assert_eq!(
        stores.keyring.load().unwrap().as_deref(),
        Some(&b"first"[..])
    );
}

fn idempotent_results_are_per_tenant_and_purged_by_age(place: &Place) {
    let stores = place.open();
    let result = IdempotentResult {
        fingerprint: "f".into(),
        execution_id: "exe_1".into(),
        sealed_output: Some(sealed("kek_1")),
        connection_id: "conn_a".into(),
        integration_key: "payments.stripe".into(),
        created_at: 10,
    };
    stores
        .idempotency
        .put_idempotent_result("acme", "k", &result)
        .unwrap();
    assert_eq!(
        stores.idempotency.idempotent_result("acme", "k").unwrap(),
        Some(result.clone())
    );
    let all: Vec<_> = stores
        .idempotency
        .all_idempotent_results()
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(all, vec![("acme".into(), "k".into(), result.clone())]);
    let next = IdempotentResult {
        sealed_output: Some(sealed("kek_2")),
        ..result.clone()
    };
    let replace = |previous: &IdempotentResult| {
        stores
            .idempotency
            .replace_idempotent_result("acme", "k", previous, &next)
            .unwrap()
    };
    assert!(replace(&result));
    assert!(!replace(&result), "compare-and-swap");
    assert_eq!(
        stores.idempotency.idempotent_result("globex", "k").unwrap(),
        None
    );
    assert_eq!(stores.idempotency.purge_idempotent_results(11).unwrap(), 1);
    assert_eq!(
        stores.idempotency.idempotent_result("acme", "k").unwrap(),
        None
    );
}

fn the_keyring_is_saved_and_loaded_whole(place: &Place) {
    let stores = place.open();
    assert_eq!(stores.keyring.load().unwrap(), None);
    stores.keyring.save(b"sealed-1").unwrap();
    stores.keyring.save(b"sealed-2").unwrap();
    assert_eq!(stores.keyring.load().unwrap(), Some(b"sealed-2".to_vec()));
}
