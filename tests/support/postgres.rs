//! The PostgreSQL server tests share (`CONDUIT_TEST_DATABASE_URL`, which `cargo xtask
//! test` sets after starting one on loopback): each test gets a database of its own.

/// A new, empty database on the test server, as a URL; `None` (the test is skipped)
/// when no server was given, unless `CONDUIT_REQUIRE_POSTGRES` says one must be (CI).
pub async fn fresh_database() -> Option<String> {
    let Ok(server) = std::env::var("CONDUIT_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CONDUIT_REQUIRE_POSTGRES").is_none(),
            "CONDUIT_REQUIRE_POSTGRES is set but CONDUIT_TEST_DATABASE_URL is not"
        );
        eprintln!("skipped: no CONDUIT_TEST_DATABASE_URL");
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test server");
    tokio::spawn(connection);
    let name = format!("conduit_{}", super::uuid_like().replace('-', "_"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    let mut url = url::Url::parse(&server).expect("CONDUIT_TEST_DATABASE_URL parses");
    url.set_path(&name);
    Some(url.to_string())
}
