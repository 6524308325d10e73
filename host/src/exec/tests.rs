//! The execute use case in process, against a connectors double that answers from a
//! script and counts what reached it: gates, budgets, quotas, failover and replay.

use super::*;
use crate::credentials::notify::Notifier;
use crate::credentials::vault::{Key, Vault};
use crate::domain::{
    AuthType, Binding, CapabilityRef, CredentialKind, IntegrationSpec, OwnershipMode, RateProfile,
    SecretFields, TenantConfig,
};
use crate::exec::circuit::CircuitPolicy;
use crate::runtime::catalog::Catalog;
use crate::runtime::connectors::{BoxFuture, Called, Connector};
use crate::runtime::ratelimit::RateLimits;
use crate::store::Stores;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

const SLUG: &str = "fakepay";
const CAPABILITY: &str = "test.echo";

/// Answers each connection's calls from its script (then succeeds), recording every
/// call that reached it.
struct Scripted {
    spec: Arc<IntegrationSpec>,
    script: Mutex<HashMap<String, VecDeque<Result<Answer, CallError>>>>,
    calls: Mutex<Vec<String>>,
}

impl Scripted {
    fn answer(&self, connection: &str, result: Result<Answer, CallError>) {
        self.script
            .lock()
            .unwrap()
            .entry(connection.into())
            .or_default()
            .push_back(result);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Connectors for Scripted {
    fn require(&self, connection: &Connection) -> Result<Connector, CallError> {
        if connection.connector == SLUG {
            Ok(Connector::described(self.spec.clone()))
        } else {
            Err(CallError::ConnectorUnavailable(
                connection.connector.clone(),
            ))
        }
    }

    fn call<'a>(&'a self, call: ConnectorCall<'a>) -> BoxFuture<'a, Called> {
        let id = call.connection.id.clone();
        self.calls.lock().unwrap().push(id.clone());
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(VecDeque::pop_front);
        let result = scripted.unwrap_or_else(|| match &call.export {
            Export::Health { .. } => Ok(Answer::Health(Health {
                healthy: true,
                detail: "ok".into(),
            })),
            _ => Ok(Answer::Output(json!({"servedBy": id}).to_string())),
        });
        let redactor = call.export.redactor();
        Box::pin(async move {
            Called {
                connector_version: Some(1),
                result,
                outbound: Vec::new(),
                redactor,
            }
        })
    }

    fn generation(&self) -> u64 {
        0
    }
}

struct World {
    exec: Exec,
    connectors: Arc<Scripted>,
    stores: Stores,
    tokens: Tokens,
}

fn world(rate_profile: RateProfile) -> World {
    let stores = Stores::temporary().unwrap();
    let vault = Arc::new(Vault::load(stores.keyring.clone(), Key::generate()).unwrap());
    let tokens = Tokens::new(&stores, vault.clone(), Notifier::log_only());
    let connectors = Arc::new(Scripted {
        spec: Arc::new(IntegrationSpec {
            slug: SLUG.into(),
            integration_key: "test.fakepay".into(),
            version: 1,
            display_name: "Fakepay".into(),
            category: "test".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec![OwnershipMode::Byok],
            capabilities: vec![CapabilityRef {
                key: CAPABILITY.into(),
                version: 1,
                description: String::new(),
            }],
            allowed_hosts: Vec::new(),
            rate_profile,
            oauth: None,
            config_defaults: Default::default(),
        }),
        script: Mutex::default(),
        calls: Mutex::default(),
    });
    let exec = Exec::new(Parts {
        quotas: stores.quotas.clone(),
        connections: Connections::new(stores.connections.clone(), Arc::new(Catalog::default())),
        tokens: tokens.clone(),
        connectors: connectors.clone(),
        contracts: Arc::new(Contracts::new()),
        audit: Audit::new(stores.audit.clone(), Duration::from_secs(3600)),
        resolver: Resolver::new(&stores, connectors.clone()),
        limits: RateLimits::new(),
        circuits: Circuits::new(CircuitPolicy::default()),
        idempotency: Idempotency::new(stores.idempotency.clone(), vault),
    });
    World {
        exec,
        connectors,
        stores,
        tokens,
    }
}

fn generous() -> RateProfile {
    RateProfile {
        requests: 1000,
        per_seconds: 1,
        burst: 1000,
    }
}

impl World {
    /// A connection of `tenant` with an API key, then shaped (status, quota, account).
    fn connection(
        &self,
        id: &str,
        tenant: &str,
        shape: impl FnOnce(&mut Connection),
    ) -> Connection {
        let mut connection = Connection::fixture(id, OwnershipMode::Byok);
        connection.tenant_id = tenant.into();
        connection.connector = SLUG.into();
        self.stores.connections.put_connection(&connection).unwrap();
        let secret = SecretFields {
            api_key: Some(format!("sk_test_{id}").into()),
            ..SecretFields::default()
        };
        // Storing a credential makes a connection ACTIVE: shape it afterwards.
        self.tokens
            .put(&connection, CredentialKind::ApiKey, &secret)
            .unwrap();
        shape(&mut connection);
        self.stores.connections.put_connection(&connection).unwrap();
        connection
    }

    async fn execute(
        &self,
        connection: &Connection,
        key: Option<&str>,
    ) -> Result<Execution, Error> {
        self.execute_input(connection, key, json!({"n": 1})).await
    }

    async fn execute_input(
        &self,
        connection: &Connection,
        key: Option<&str>,
        input: Value,
    ) -> Result<Execution, Error> {
        self.exec
            .execute(Request {
                tenant_id: connection.tenant_id.clone(),
                connection_id: connection.id.clone(),
                capability: CAPABILITY.into(),
                input,
                idempotency_key: key.map(str::to_owned),
            })
            .await
    }

    /// Publishes `app` for `tenant` in production with these connections, in order.
    fn publish(&self, tenant: &str, connections: &[&Connection]) {
        let integrations = connections
            .iter()
            .enumerate()
            .map(|(i, c)| Binding {
                slot_id: format!("slot-{i}"),
                connection_id: c.id.clone(),
                scope: None,
                priority: i as i32,
                config: Default::default(),
            })
            .collect();
        let mut config = TenantConfig::draft_fixture(tenant);
        config.integrations = integrations;
        let configs = &self.stores.configs;
        configs.insert_config_version(&mut config).unwrap();
        configs
            .publish(
                tenant,
                "app",
                Environment::Production,
                config.meta.version,
                0,
            )
            .unwrap()
            .unwrap();
    }

    async fn execute_bound(&self, tenant: &str) -> Result<Execution, Error> {
        self.exec
            .execute_bound(BoundRequest {
                tenant_id: tenant.into(),
                blueprint: "app".into(),
                environment: Environment::Production,
                workflow: "checkout".into(),
                operation: None,
                capability: CAPABILITY.into(),
                input: json!({"n": 1}),
                idempotency_key: None,
            })
            .await
    }
}

fn provider(status: u16) -> Result<Answer, CallError> {
    Err(CallError::Provider {
        status,
        code: None,
        message: "refused".into(),
        retryable: false,
        retry_after: None,
    })
}

fn code<T>(result: Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn a_connection_that_cannot_serve_never_reaches_the_connector() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |c| {
        c.status = ConnectionStatus::NeedsReauth;
    });
    assert_eq!(code(w.execute(&connection, None).await), "needs_reauth");
    assert!(w.connectors.calls().is_empty());
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_provider_failures() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |_| {});
    for _ in 0..5 {
        w.connectors.answer("conn_a", provider(503));
        assert_eq!(code(w.execute(&connection, None).await), "provider_error");
    }
    let refused = w.execute(&connection, None).await;
    assert!(
        matches!(&refused, Err(Error::CircuitOpen(wait)) if !wait.is_zero()),
        "{refused:?}"
    );
    assert_eq!(
        w.connectors.calls().len(),
        5,
        "the open circuit called nobody"
    );
}

#[tokio::test]
async fn a_provider_refusal_below_500_does_not_open_the_circuit() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |_| {});
    for _ in 0..6 {
        w.connectors.answer("conn_a", provider(402));
        assert_eq!(code(w.execute(&connection, None).await), "provider_error");
    }
    assert_eq!(code(w.execute(&connection, None).await), "ok");
}

#[tokio::test]
async fn the_daily_quota_refuses_without_calling() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |c| c.daily_quota = Some(1));
    assert_eq!(code(w.execute(&connection, None).await), "ok");
    let refused = w.execute(&connection, None).await;
    assert!(
        matches!(&refused, Err(Error::RateLimited { retry_after, .. }) if !retry_after.is_zero()),
        "{refused:?}"
    );
    assert_eq!(w.connectors.calls(), ["conn_a"]);
}

/// A call refused for want of room in the instance pool never ran: it gives its
/// quota unit back and teaches the circuit nothing.
#[tokio::test]
async fn a_busy_refusal_spends_no_quota_and_leaves_the_circuit_alone() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |c| c.daily_quota = Some(1));
    for _ in 0..5 {
        w.connectors
            .answer("conn_a", Err(CallError::Busy(crate::runtime::Busy::Tenant)));
        assert_eq!(code(w.execute(&connection, None).await), "busy");
    }
    // Five busy answers: the circuit is closed, the day's one execution still there.
    assert_eq!(code(w.execute(&connection, None).await), "ok");
    assert_eq!(code(w.execute(&connection, None).await), "rate_limited");
}

#[tokio::test]
async fn one_tenants_connections_to_one_account_share_its_budget_and_no_other_tenant_does() {
    let w = world(RateProfile {
        requests: 1,
        per_seconds: 3600,
        burst: 1,
    });
    let account = |c: &mut Connection| c.external_account_id = Some("acct_1".into());
    let a = w.connection("conn_a", "acme", account);
    let b = w.connection("conn_b", "acme", account);
    let c = w.connection("conn_c", "globex", account);
    assert_eq!(code(w.execute(&a, None).await), "ok");
    assert_eq!(code(w.execute(&b, None).await), "rate_limited");
    assert_eq!(
        code(w.execute(&c, None).await),
        "ok",
        "another tenant's claim"
    );
    assert_eq!(w.connectors.calls(), ["conn_a", "conn_c"]);
}

#[tokio::test]
async fn a_rejected_credential_fails_over_to_the_next_binding_and_flips_the_connection() {
    let w = world(generous());
    let first = w.connection("conn_a", "acme", |_| {});
    let second = w.connection("conn_b", "acme", |_| {});
    w.publish("acme", &[&first, &second]);
    w.connectors.answer(
        "conn_a",
        Err(CallError::NeedsReauth("token revoked".into())),
    );
    let served = w.execute_bound("acme").await.unwrap();
    assert_eq!(served.connection_id, "conn_b");
    assert_eq!(served.output["servedBy"], "conn_b");
    assert_eq!(
        served
            .skipped
            .iter()
            .map(|s| (s.connection_id.as_str(), s.reason.as_str()))
            .collect::<Vec<_>>(),
        [("conn_a", "needs_reauth")]
    );
    let flipped = w.stores.connections.connection("conn_a").unwrap().unwrap();
    assert_eq!(flipped.status, ConnectionStatus::NeedsReauth);
    // The next call skips the flipped connection without asking it.
    assert_eq!(
        w.execute_bound("acme").await.unwrap().connection_id,
        "conn_b"
    );
    assert_eq!(w.connectors.calls(), ["conn_a", "conn_b", "conn_b"]);
}

#[tokio::test]
async fn a_provider_error_is_the_answer_and_no_other_binding_is_asked() {
    let w = world(generous());
    let first = w.connection("conn_a", "acme", |_| {});
    let second = w.connection("conn_b", "acme", |_| {});
    w.publish("acme", &[&first, &second]);
    w.connectors.answer("conn_a", provider(402));
    assert_eq!(code(w.execute_bound("acme").await), "provider_error");
    assert_eq!(w.connectors.calls(), ["conn_a"]);
}

#[tokio::test]
async fn nothing_published_is_no_binding() {
    let w = world(generous());
    assert_eq!(code(w.execute_bound("acme").await), "no_binding");
    assert!(w.connectors.calls().is_empty());
}

#[tokio::test]
async fn an_idempotent_repeat_replays_and_another_request_under_the_key_conflicts() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |_| {});
    let first = w.execute(&connection, Some("order-1")).await.unwrap();
    let again = w.execute(&connection, Some("order-1")).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!((again.id, again.output), (first.id, first.output));
    let other = w
        .execute_input(&connection, Some("order-1"), json!({"n": 2}))
        .await;
    assert_eq!(code(other), "idempotency_conflict");
    assert_eq!(w.connectors.calls(), ["conn_a"]);
}

/// The result kept for replays is sealed: what the store holds names no part of the
/// output, and the replay still answers it whole.
#[tokio::test]
async fn a_stored_result_is_sealed_and_still_replays() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |_| {});
    let body = json!({"message": "the quarterly numbers are in the attachment"});
    w.connectors
        .answer("conn_a", Ok(Answer::Output(body.to_string())));
    let first = w.execute(&connection, Some("order-7")).await.unwrap();
    let stored = w
        .stores
        .idempotency
        .idempotent_result("acme", "order-7")
        .unwrap()
        .unwrap();
    let kept = serde_json::to_string(&stored).unwrap();
    assert!(stored.sealed_output.is_some());
    assert!(!kept.contains("quarterly"), "{kept}");
    let again = w.execute(&connection, Some("order-7")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.output, first.output);
    assert_eq!(again.output["message"], body["message"]);
}

#[tokio::test]
async fn a_health_check_treats_a_provider_refusal_as_unhealthy() {
    let w = world(generous());
    w.connection("conn_a", "acme", |_| {});
    assert!(w.exec.health("acme", "conn_a").await.unwrap().healthy);
    w.connectors.answer("conn_a", provider(401));
    let health = w.exec.health("acme", "conn_a").await.unwrap();
    assert!(!health.healthy);
    assert!(health.detail.contains("401"), "{}", health.detail);
    assert_eq!(code(w.exec.health("globex", "conn_a").await), "not_found");
}

#[tokio::test]
async fn an_echoed_credential_never_leaves_in_the_output() {
    let w = world(generous());
    let connection = w.connection("conn_a", "acme", |_| {});
    w.connectors.answer(
        "conn_a",
        Ok(Answer::Output(
            json!({"echo": "sk_test_conn_a"}).to_string(),
        )),
    );
    let served = w.execute(&connection, None).await.unwrap();
    assert_eq!(served.output["echo"], "<redacted>");
}
