//! The PostgreSQL implementation of every store trait, for several replicas on one
//! database. Records are the JSON documents the sled backend writes; each aggregate is
//! a table (`host/migrations`), and each write that sled makes atomic with a
//! transaction or a compare-and-swap is one statement or one transaction here.
//!
//! The store traits are synchronous, like sled. The connections are driven by their
//! own thread (a current-thread tokio runtime that only does their IO); a caller takes
//! one connection of the pool, sends its statements and waits for the answers on its
//! own thread. Statements are prepared once per connection.
//!
//! May import: `domain`, and the traits and helpers of `store`.

mod accounts;
mod catalog;
mod records;

use super::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connections per replica: enough for the request threads, the audit writer and the
/// background tasks to run their statements side by side.
const POOL_SIZE: usize = 8;

/// The schema history table refinery keeps.
const HISTORY_TABLE: &str = "conduit_schema_history";

/// Taken around migrations, so replicas starting at once apply them one at a time.
const MIGRATION_LOCK: i64 = 0x636f_6e64_7569_7401;

/// Every store trait over one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Pool>,
}

struct Pool {
    config: tokio_postgres::Config,
    schema: Option<String>,
    driver: Driver,
    connections: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

/// One open connection and the statements prepared on it.
struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`), applies the
    /// embedded migrations and opens the pool.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_in(url, None)
    }

    /// [`PgStore::connect`] into `schema` (created if missing) instead of the
    /// database's default search path: each test gets its own.
    pub fn connect_in(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            // The parser's message may quote the URL, password included.
            .map_err(|_| Error::Unavailable("the database URL does not parse".into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("conduit");
        let pool = Pool {
            config,
            schema: schema.map(str::to_owned),
            driver: Driver::start()?,
            connections: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        let store = PgStore {
            inner: Arc::new(pool),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let mut client = self.inner.open_client(true)?;
        let lock = [&MIGRATION_LOCK as &(dyn ToSql + Sync)];
        wait(client.execute("SELECT pg_advisory_lock($1)", &lock))?;
        let mut runner = embedded::migrations::runner().set_grouped(true);
        runner.set_migration_table_name(HISTORY_TABLE);
        let applied = wait(runner.run_async(&mut client));
        wait(client.execute("SELECT pg_advisory_unlock($1)", &lock))?;
        applied.map_err(|e| Error::Unavailable(format!("migrating the database: {e}")))?;
        Ok(())
    }

    /// Runs `work` on one connection of the pool.
    fn session<R>(&self, work: impl FnOnce(&mut Session<'_>) -> Result<R>) -> Result<R> {
        let mut slot = self.inner.take_slot();
        let healthy = slot.as_ref().is_some_and(|c| !c.client.is_closed());
        if !healthy {
            *slot = Some(Connection {
                client: self.inner.open_client(false)?,
                statements: HashMap::new(),
            });
        }
        let connection = slot.as_mut().expect("opened above");
        let outcome = work(&mut Session { connection });
        if outcome.is_err() && connection.client.is_closed() {
            *slot = None;
        }
        outcome
    }

    /// Runs `work` in one transaction: committed when it returns `Ok`, rolled back
    /// otherwise.
    fn transaction<R>(&self, work: impl FnOnce(&mut Session<'_>) -> Result<R>) -> Result<R> {
        self.session(|session| {
            session.batch("BEGIN")?;
            match work(session) {
                Ok(value) => {
                    session.batch("COMMIT")?;
                    Ok(value)
                }
                Err(e) => {
                    // A failed rollback leaves the connection closed, so it is replaced.
                    let _ = session.batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }
}

impl Pool {
    /// A free connection slot, or the next one in turn when all are busy. A slot whose
    /// holder panicked may be mid-transaction: it is emptied, so it reconnects.
    fn take_slot(&self) -> MutexGuard<'_, Option<Connection>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.connections.len();
        for i in 0..n {
            if let Ok(slot) = self.connections[(start + i) % n].try_lock() {
                return slot;
            }
        }
        match self.connections[start % n].lock() {
            Ok(slot) => slot,
            Err(poisoned) => {
                let mut slot = poisoned.into_inner();
                *slot = None;
                slot
            }
        }
    }

    /// A new connection, its IO spawned on the driver thread, in the pool's schema
    /// (created first when `create_schema`).
    fn open_client(&self, create_schema: bool) -> Result<Client> {
        let config = self.config.clone();
        let connect = async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a PostgreSQL connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        };
        let client = wait(self.driver.handle.spawn(connect))
            .map_err(|_| Error::Unavailable("the PostgreSQL driver thread stopped".into()))?
            .map_err(|e| Error::Unavailable(format!("connecting to PostgreSQL: {e}")))?;
        if let Some(schema) = &self.schema {
            let schema = quote_identifier(schema);
            if create_schema {
                wait(client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")))?;
            }
            wait(client.batch_execute(&format!("SET search_path TO {schema}")))?;
        }
        Ok(client)
    }
}

/// The thread that drives every connection's IO; stopped when the pool drops.
struct Driver {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Driver {
    fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Unavailable(format!("starting the PostgreSQL driver: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("conduit-postgres".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| Error::Unavailable(format!("starting the PostgreSQL driver: {e}")))?;
        Ok(Driver {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits on the caller's thread for a future whose IO the driver thread does (a
/// client's requests only wait on channels to their connection).
fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One connection, taken from the pool for the length of a unit of work.
pub(super) struct Session<'a> {
    connection: &'a mut Connection,
}

/// Statement parameters.
type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Session<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.connection.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = wait(self.connection.client.prepare(sql))?;
        self.connection.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        Ok(wait(self.connection.client.query(&statement, params))?)
    }

    fn query_opt(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        Ok(wait(self.connection.client.query_opt(&statement, params))?)
    }

    fn execute(&mut self, sql: &'static str, params: &Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        Ok(wait(self.connection.client.execute(&statement, params))?)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(wait(self.connection.client.batch_execute(sql))?)
    }
}

/// The rows of a whole-table read as the iterator the traits' `all_*` methods
/// return: the read's failure, if any, is its one item.
fn rows_of<'a, T: 'a>(
    rows: Result<Vec<Row>>,
    decode: impl Fn(Row) -> Result<T> + 'a,
) -> Box<dyn Iterator<Item = Result<T>> + 'a> {
    match rows {
        Ok(rows) => Box::new(rows.into_iter().map(decode)),
        Err(e) => Box::new(std::iter::once(Err(e))),
    }
}

/// A unix-ms time (or any u64) as PostgreSQL's bigint; values past `i64::MAX` (an open
/// upper bound) clamp to it.
fn big(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A bigint column back as u64 (the store writes only non-negative values).
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl super::Durable for PgStore {
    /// Every write is committed before its call returns.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
