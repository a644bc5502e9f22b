//! How the embedded migrations are applied without touching the host's `_sqlx_migrations`.
//!
//! sqlx 0.8's [`sqlx::migrate::Migrator`] keeps its ledger in a table whose name,
//! `_sqlx_migrations`, is fixed in each driver (a configurable name arrives only with
//! sqlx 0.9, as `[migrate] table-name` in `sqlx.toml`). A host server that runs its own
//! `sqlx::migrate!()` on the same database would then see this crate's versions as
//! "applied but missing" and fail with `VersionMissing` unless it, too, set
//! `ignore_missing`; version numbers of the two sets could also collide.
//!
//! So the migrations are still embedded with `sqlx::migrate!` (files under
//! `migrations/sqlite` and `migrations/postgres`, checksummed at compile time), but
//! they are applied by this crate, which records them in its own ledger table,
//! [`MIGRATIONS_TABLE`]. The host's migrator and this one never see each other's
//! versions, whatever settings either uses. Each backend runs the whole pass in one
//! transaction under an exclusive lock, so concurrent server instances migrate once,
//! and a failed migration leaves nothing behind (both databases have transactional
//! DDL). A migration file edited after it was applied is refused with
//! `MigrateError::VersionMismatch`, as sqlx would.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::collections::HashMap;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::migrate::{MigrateError, Migration, Migrator};

/// The table in which this crate records the migrations it applied. It is separate from
/// sqlx's `_sqlx_migrations`, which stays entirely the host application's.
pub const MIGRATIONS_TABLE: &str = "_idempotency_sql_migrations";

/// Chooses the migrations still to apply, given the ledger's `(version, checksum)` rows.
///
/// A ledger row whose version this build does not know is ignored (a newer release of
/// the crate applied it; its schema changes are additive by policy). A known version
/// whose checksum differs is an error: the migration file was edited after release.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn pending(
    migrator: &Migrator,
    applied: Vec<(i64, Vec<u8>)>,
) -> Result<Vec<&Migration>, MigrateError> {
    let applied: HashMap<i64, Vec<u8>> = applied.into_iter().collect();
    let mut pending = Vec::new();
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        match applied.get(&migration.version) {
            Some(checksum) if checksum.as_slice() != &*migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => pending.push(migration),
        }
    }
    Ok(pending)
}

/// Reads the ledger. The same statement works on both backends.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const SELECT_APPLIED: &str = "SELECT version, checksum FROM _idempotency_sql_migrations";

/// Records an applied migration. Binds: `$1` version, `$2` description, `$3` checksum,
/// `$4` Unix milliseconds.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const INSERT_APPLIED: &str = "\
INSERT INTO _idempotency_sql_migrations (version, description, checksum, installed_at)
VALUES ($1, $2, $3, $4)";

/// Now, in Unix milliseconds, for the ledger's `installed_at`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn now_millis() -> i64 {
    crate::codec::unix_millis(std::time::SystemTime::now())
}

/// Creates the ledger with `ledger_ddl` when missing, then applies and records every
/// migration of `migrator` it lacks, on `connection`: the caller's transaction, begun
/// under the backend's exclusive lock. `backend` names the database in the log.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn apply_pending<DB>(
    connection: &mut DB::Connection,
    migrator: &Migrator,
    ledger_ddl: &str,
    backend: &str,
) -> Result<(), MigrateError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (i64, Vec<u8>): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    use sqlx::Executor as _;

    sqlx::query::<DB>(ledger_ddl)
        .execute(&mut *connection)
        .await?;
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as::<DB, (i64, Vec<u8>)>(SELECT_APPLIED)
        .fetch_all(&mut *connection)
        .await?;
    for migration in pending(migrator, applied)? {
        // A plain string runs as a script of several statements, as in sqlx's migrator.
        (&mut *connection)
            .execute(&*migration.sql)
            .await
            .map_err(|error| MigrateError::ExecuteMigration(error, migration.version))?;
        sqlx::query::<DB>(INSERT_APPLIED)
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .bind(now_millis())
            .execute(&mut *connection)
            .await?;
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            ledger = MIGRATIONS_TABLE,
            backend,
            "applied an idempotency-sql migration"
        );
    }
    Ok(())
}
