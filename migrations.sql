-- webhook-inbox schema, version 3 (upgrades a version 1 or 2 database in place).
--
-- Idempotent: safe to run any number of times, e.g. `spin up --sqlite @migrations.sql` or a
-- separate migration step. The component applies this same file itself on first use, one
-- statement at a time, guarded by `PRAGMA user_version`, so running it is optional.
--
-- It runs unchanged on a local SQLite file and on a libSQL server, so it holds no setting
-- that only a local file understands (libSQL refuses `PRAGMA journal_mode`, `synchronous`
-- and `busy_timeout`). The component sets those itself on a local file, before each write
-- (src/storage/session.rs).

-- How a message is stored (see src/storage/fold.rs for why):
-- 1. The webhook writes one row into `incoming`: a small table with no index but its
--    idempotency key, so the write touches two B-tree pages and holds the lock briefly.
-- 2. Every few hundred messages, one statement moves the whole of `incoming` into
--    `messages` (the `fold_incoming` trigger), where the filter indexes and the aggregate
--    trigger do their work for the batch at once.
-- 3. Reads see both tables, so every list, count and aggregate is exact at all times.

-- One row per message, exactly as sent, plus derived columns for ordering and search.
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY,   -- rowid: compact, append-ordered storage
    message_id  TEXT NOT NULL UNIQUE,  -- idempotency key: first write wins
    sender      TEXT NOT NULL,         -- "from"
    recipient   TEXT NOT NULL,         -- "to"
    ts          TEXT NOT NULL,         -- as sent
    ts_key      TEXT NOT NULL,         -- the instant, sortable as text (see src/timestamp.rs)
    body_text   TEXT,                  -- "text" as sent; NULL when absent
    text_folded TEXT                   -- body_text lower-cased, for case-insensitive search
);

-- Each /messages filter, with the (ts, message_id) order behind it, so a first page reads
-- only the rows it returns.
CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts_key, message_id);
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (sender, ts_key, message_id);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, ts_key, message_id);

-- Aggregates kept up to date by the trigger below, inside the inserting transaction, so
-- /stats and unfiltered counts never scan the messages.
CREATE TABLE IF NOT EXISTS sender_counts (
    sender   TEXT PRIMARY KEY,
    messages INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sender_counts_top ON sender_counts (messages DESC, sender);

CREATE TABLE IF NOT EXISTS recipient_counts (
    recipient TEXT PRIMARY KEY,
    messages  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS inbox_totals (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    messages  INTEGER NOT NULL,
    senders   INTEGER NOT NULL,
    first_key TEXT,
    first_ts  TEXT,
    last_key  TEXT,
    last_ts   TEXT
);
INSERT OR IGNORE INTO inbox_totals (id, messages, senders) VALUES (1, 0, 0);

-- Prometheus counters: one row per series. `value` has no declared type so counts stay
-- integers and the latency sum stays real. Histogram buckets are stored per bucket, not
-- cumulative, so a request touches one bucket row.
CREATE TABLE IF NOT EXISTS metric_counters (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,
    value  NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;

-- Messages per hour of `ts`: the first 13 characters of ts_key ("2025-01-15T10"). A `since`
-- total sums the whole hours after `since` and counts index entries only within its own
-- hour, instead of counting every matching row.
CREATE TABLE IF NOT EXISTS hour_counts (
    hour     TEXT PRIMARY KEY,
    messages INTEGER NOT NULL
) WITHOUT ROWID;
-- Fills the table for a version 1 database (a no-op once it has rows or without messages).
INSERT INTO hour_counts (hour, messages)
    SELECT substr(ts_key, 1, 13), count(*) FROM messages
    WHERE NOT EXISTS (SELECT 1 FROM hour_counts)
    GROUP BY substr(ts_key, 1, 13);

-- The trigger keeps every aggregate (and the `created` counter) in step with `messages`,
-- inside the inserting statement: the fold's, for new messages. Messages still in
-- `incoming` are added by the reads. Dropped and created again so an older version is
-- replaced.
DROP TRIGGER IF EXISTS messages_aggregate;
CREATE TRIGGER messages_aggregate AFTER INSERT ON messages
BEGIN
    INSERT INTO sender_counts (sender, messages) VALUES (NEW.sender, 1)
        ON CONFLICT (sender) DO UPDATE SET messages = messages + 1;
    INSERT INTO recipient_counts (recipient, messages) VALUES (NEW.recipient, 1)
        ON CONFLICT (recipient) DO UPDATE SET messages = messages + 1;
    INSERT INTO hour_counts (hour, messages) VALUES (substr(NEW.ts_key, 1, 13), 1)
        ON CONFLICT (hour) DO UPDATE SET messages = messages + 1;
    -- `created` is counted with the row it counts, in the same statement: the insert is one
    -- autocommit statement, so the write lock is held for no host round trip.
    INSERT INTO metric_counters (name, labels, value)
        VALUES ('webhook_requests_total', 'result="created"', 1)
        ON CONFLICT (name, labels) DO UPDATE SET value = value + 1;
    UPDATE inbox_totals SET
        messages  = messages + 1,
        senders   = senders + (SELECT messages = 1 FROM sender_counts WHERE sender = NEW.sender),
        first_ts  = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key THEN NEW.ts ELSE first_ts END,
        first_key = CASE WHEN first_key IS NULL OR NEW.ts_key < first_key THEN NEW.ts_key ELSE first_key END,
        last_ts   = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key THEN NEW.ts ELSE last_ts END,
        last_key  = CASE WHEN last_key IS NULL OR NEW.ts_key > last_key THEN NEW.ts_key ELSE last_key END
    WHERE id = 1;
END;

-- New messages, until the next fold moves them into `messages`. Same columns. `seq` counts
-- up from 1 after each fold empties the table, which is what tells a writer it is time to
-- fold again (src/storage/fold.rs).
CREATE TABLE IF NOT EXISTS incoming (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    ts_key      TEXT NOT NULL,
    body_text   TEXT,
    text_folded TEXT
);

-- Bumping `folds` runs the fold: one statement, so the move is atomic on a local file and
-- on a libSQL server alike, and holds the write lock for no round trip. A message_id
-- already in `messages` (possible only if an older version of the component stored it
-- directly while this one had it in `incoming`) keeps its first row.
CREATE TABLE IF NOT EXISTS incoming_folds (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    folds INTEGER NOT NULL
);
INSERT OR IGNORE INTO incoming_folds (id, folds) VALUES (1, 0);
DROP TRIGGER IF EXISTS fold_incoming;
CREATE TRIGGER fold_incoming AFTER UPDATE OF folds ON incoming_folds
BEGIN
    INSERT INTO messages (message_id, sender, recipient, ts, ts_key, body_text, text_folded)
        SELECT message_id, sender, recipient, ts, ts_key, body_text, text_folded
        FROM incoming WHERE true ORDER BY seq
        ON CONFLICT (message_id) DO NOTHING;
    DELETE FROM incoming;
END;

PRAGMA user_version = 3;
