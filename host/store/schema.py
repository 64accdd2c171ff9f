"""The store's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Times are Unix seconds (double precision), as the engine records them; the API renders them as
ISO-8601 UTC. JSON columns hold what the engine traced (inputs, outputs, usage) and the workflow
definitions as written (``${VAR}`` references unresolved — resolved secrets never reach the store).

``SCHEMA_VERSION`` is stored in ``meta``; bump it and add a step to ``db.MIGRATIONS`` whenever a
table changes shape.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

workflows = Table(
    "workflows", metadata,
    Column("name", String(255), primary_key=True),
    # NULL when another workflow has since claimed this model name (it is no longer published
    # under it); unique so one model name always means one workflow.
    Column("model", String(255), nullable=True, unique=True),
    Column("current_version", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

workflow_versions = Table(
    "workflow_versions", metadata,
    Column("workflow", String(255), ForeignKey("workflows.name", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source_text", Text, nullable=False),
    Column("definition", JSON(none_as_null=True), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("workflow", "version", name="pk_workflow_versions"),
)

runs = Table(
    "runs", metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", String(255), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("model", String(255), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double, nullable=True),
    Column("duration_ms", Double, nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cache_read_tokens", Integer, nullable=False),
    Column("cache_write_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost_usd", Double, nullable=True),
    Column("error", Text, nullable=True),
    Column("session_id", String(255), nullable=True),
)
# Every listing is newest first, optionally filtered by one column: (filter, started_at, id) lets
# each filtered page be an index range scan; id breaks ties for the cursor.
Index("ix_runs_started_at", runs.c.started_at.desc(), runs.c.id.desc())
Index("ix_runs_model", runs.c.model, runs.c.started_at)
Index("ix_runs_status", runs.c.status, runs.c.started_at)
# Partial: most runs have no session, and an index entry per run was a tenth of a run's write.
# ``session_id = :x`` implies the condition, so both databases still use it for a session's runs.
Index("ix_runs_session_id", runs.c.session_id, runs.c.started_at,
      sqlite_where=runs.c.session_id.is_not(None), postgresql_where=runs.c.session_id.is_not(None))
Index("ix_runs_workflow", runs.c.workflow, runs.c.started_at)

# A run's spans, in recorded order, as one JSON array of span objects (the keys of ``SpanRow`` but
# ``run_id`` and ``price``; None fields and zero usage counts left out; the engine's span ids are numbers
# within the run, read back as "<run id>.<n>"; an output shared by two spans is stored once, see
# ``SpanRow.output_of``; a client's request body is kept as it came, see ``SpanRow.input_format``; both
# databases are given the document's UTF-8 bytes: SQLite keeps a BLOB, PostgreSQL json). Spans are only ever read
# a whole run at a time, and one row per run instead of one per span made a traced request's write
# about half the database work (CPU instructions per run, counted with callgrind): schema version 2.
run_spans = Table(
    "run_spans", metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("spans", JSON, nullable=False),
)
