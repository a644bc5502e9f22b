-- One table for every record kind added after delegations and DIDs (audit events,
-- reputation interactions, provenance entries, compliance records, ...), so that each
-- kind is stored by one dialect-neutral implementation (src/storage/records.rs)
-- instead of a table and a statement set per kind and per dialect.
--
-- `scope` is the owner (principal/tenant), `kind` names the record kind, `id` its id
-- within the kind. `subject` is the id the record is about (an event's target_id, an
-- interaction's agent), `label` a kind-specific filter value (an event's action, an
-- interaction's category). `document` is the JSON exactly as returned. Instants are
-- Unix milliseconds. Listing follows `seq`.
CREATE TABLE records (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    subject       TEXT,
    label         TEXT,
    created_at_ms BIGINT  NOT NULL,
    document      TEXT    NOT NULL,
    UNIQUE (scope, kind, id)
);

CREATE INDEX records_scope_kind_seq ON records (scope, kind, seq);
CREATE INDEX records_scope_kind_subject_seq ON records (scope, kind, subject, seq);

-- The agents each record belongs to or mentions: what a purge deletes or redacts, and
-- what per-agent aggregates count, without parsing documents.
CREATE TABLE record_refs (
    record_seq BIGINT  NOT NULL REFERENCES records (seq) ON DELETE CASCADE,
    scope      TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    PRIMARY KEY (scope, agent_id, record_seq)
);

CREATE INDEX record_refs_record ON record_refs (record_seq);

-- The head of each hash chain (the audit chain of a scope, an agent's action log):
-- appends update it in their transaction, which serializes them per chain.
CREATE TABLE chain_heads (
    scope  TEXT    NOT NULL,
    chain  TEXT    NOT NULL,
    length BIGINT  NOT NULL,
    head   TEXT    NOT NULL,
    PRIMARY KEY (scope, chain)
);
