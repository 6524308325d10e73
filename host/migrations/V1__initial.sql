-- Every aggregate the sled backend keeps, one table each. Records are the same JSON
-- documents sled stores (bytea: byte-equal compare-and-swap, and any string a
-- connector reports, NUL included, round-trips); columns beside them are what a
-- query selects or orders by. Identifiers order bytewise (COLLATE "C"), as sled's
-- keys do, so pages and scans come back in the same order on either backend.

CREATE TABLE tenants (
    id text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);

CREATE TABLE tenant_tokens (
    token_hash bytea PRIMARY KEY,
    tenant_id text COLLATE "C" NOT NULL
);

CREATE TABLE connections (
    id text COLLATE "C" PRIMARY KEY,
    tenant_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX connections_by_tenant ON connections (tenant_id, id);

-- due_at: where the scheduler finds a refreshable credential (its expiry, or where
-- it was re-indexed); NULL when it is not indexed.
CREATE TABLE credentials (
    connection_id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    due_at bigint,
    doc bytea NOT NULL
);
CREATE INDEX credentials_due ON credentials (due_at, connection_id) WHERE due_at IS NOT NULL;

-- Leases (a credential's refresh, a request under an idempotency key): one replica
-- at a time does the work. The generation is the fencing token; until, unix ms, when a
-- dead holder's lease lapses.
CREATE TABLE leases (
    name text COLLATE "C" PRIMARY KEY,
    generation bigint NOT NULL,
    until bigint NOT NULL
);

CREATE TABLE oauth_clients (
    connection_id text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);

CREATE TABLE oauth_states (
    state_hash bytea PRIMARY KEY,
    tenant_id text COLLATE "C" NOT NULL,
    expires_at bigint NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX oauth_states_by_tenant ON oauth_states (tenant_id, expires_at);
CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

CREATE TABLE audit (
    tenant_id text COLLATE "C" NOT NULL,
    time bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    connection_id text COLLATE "C",
    capability text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (tenant_id, time, id)
);
CREATE INDEX audit_by_time ON audit (time);

CREATE TABLE blueprints (
    name text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE tenant_configs (
    tenant_id text COLLATE "C" NOT NULL,
    blueprint text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (tenant_id, blueprint, environment, version)
);

CREATE TABLE published_configs (
    tenant_id text COLLATE "C" NOT NULL,
    blueprint text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (tenant_id, blueprint, environment)
);

CREATE TABLE idempotency (
    tenant_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

CREATE TABLE quotas (
    connection_id text COLLATE "C" NOT NULL,
    day bigint NOT NULL,
    used bigint NOT NULL,
    PRIMARY KEY (connection_id, day)
);

CREATE TABLE plugin_deployments (
    slug text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);

CREATE TABLE plugin_components (
    sha256 text COLLATE "C" PRIMARY KEY,
    wasm bytea NOT NULL
);

CREATE TABLE webhook_outbox (
    sequence bigserial PRIMARY KEY,
    connection_id text COLLATE "C" NOT NULL,
    raised_at bigint NOT NULL,
    body bytea NOT NULL
);

-- Per-tenant change counters the resolution caches of every replica compare.
CREATE TABLE tenant_revisions (
    tenant_id text COLLATE "C" PRIMARY KEY,
    revision bigint NOT NULL
);

CREATE TABLE vault_keyring (
    id smallint PRIMARY KEY CHECK (id = 1),
    sealed bytea NOT NULL
);
