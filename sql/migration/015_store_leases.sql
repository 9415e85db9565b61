-- A store's lock as lease rows in the database every worker already shares, so that the steps of one run
-- in any number of processes (or machines) hold the store together and any other run is refused. One row
-- per holding process: a heartbeat pushes expires_at forward while the process works; a process that
-- crashed stops renewing, and its row no longer counts once expires_at is past; sooner when it marked itself
-- alive (an advisory lock held by its open connection, dropped by PostgreSQL when the process dies).
CREATE TABLE migration.store_leases (
    store      text        NOT NULL,
    holder     text        NOT NULL,  -- host:pid:nonce of the process holding it
    run_id     text        NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    alive      boolean     NOT NULL DEFAULT false,  -- holds its advisory mark while its process lives
    PRIMARY KEY (store, holder)
);
COMMENT ON TABLE migration.store_leases IS
    'Who holds each store: a row per process of the holding run, renewed by a heartbeat; an expired row is void';
