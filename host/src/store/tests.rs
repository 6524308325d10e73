//! The store's unit tests: the binding layers' aggregates.

use super::*;
use crate::domain::{ConfigMeta, ConfigStatus, Environment, TenantConfig};

fn draft(tenant: &str) -> TenantConfig {
    TenantConfig {
        meta: ConfigMeta {
            tenant_id: tenant.into(),
            blueprint_name: "app".into(),
            blueprint_version: "1".into(),
            environment: Environment::Production,
            version: 0,
            status: ConfigStatus::Draft,
        },
        integrations: Vec::new(),
        branding: serde_json::Value::Null,
        created_at: 0,
        updated_at: 0,
    }
}

#[test]
fn versions_count_up_and_publishing_archives_the_previous_one() {
    let store = Store::temporary().unwrap();
    let (mut one, mut two) = (draft("acme"), draft("acme"));
    store.insert_config_version(&mut one).unwrap();
    store.insert_config_version(&mut two).unwrap();
    let mut other = draft("globex");
    store.insert_config_version(&mut other).unwrap();
    assert_eq!(
        (one.meta.version, two.meta.version, other.meta.version),
        (1, 2, 1)
    );

    let revision = store.revision("acme");
    let env = Environment::Production;
    store
        .publish_config("acme", "app", env, 1, 5)
        .unwrap()
        .unwrap();
    assert!(
        store.revision("acme") > revision,
        "publication invalidates caches"
    );
    store
        .publish_config("acme", "app", env, 2, 6)
        .unwrap()
        .unwrap();
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
        store.publish_config("acme", "app", env, 1, 7).unwrap(),
        Err(PublishRefusal::Archived)
    ));
    assert!(matches!(
        store.publish_config("acme", "app", env, 9, 7).unwrap(),
        Err(PublishRefusal::Missing)
    ));
    assert!(store
        .published_config("globex", "app", env)
        .unwrap()
        .is_none());
}

#[test]
fn quotas_count_to_their_limit_per_day() {
    let store = Store::temporary().unwrap();
    assert!(store.take_quota("c", 1, 2).unwrap());
    assert!(store.take_quota("c", 1, 2).unwrap());
    assert!(!store.take_quota("c", 1, 2).unwrap());
    assert!(store.take_quota("c", 2, 2).unwrap(), "a new day");
    assert!(store.take_quota("d", 1, 2).unwrap(), "another connection");
}
