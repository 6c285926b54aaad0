//! The database file, its schema migrations, the one writer thread and the read connections.
//!
//! Writes go to one thread that owns the only write connection. It takes every write waiting
//! (up to [`MAX_GROUP`]) and commits them in one transaction (group commit); every write is
//! answered only once the transaction holding it has committed. A write that fails is undone
//! alone and answers its error: the group is then run again with each write in a savepoint of
//! its own (see [`commit_group`]). Reads run on connections of their own (WAL: readers never
//! wait for the writer, nor it for them).

use hookline_service::PortError;
use hookline_service::ports::PortResult;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// The store's file under the data directory.
pub const DB_FILE: &str = "hookline.sqlite3";
/// Most writes committed in one transaction.
pub(crate) const MAX_GROUP: usize = 1024;
/// Read connections kept open between reads (more are opened when needed).
const MAX_IDLE_READERS: usize = 8;
/// How long a connection waits for a lock (a checkpoint, another process) before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The schema, one entry per version: version `i + 1` is reached by running `MIGRATIONS[i]`.
/// Never edit an entry once released; add one.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

pub(crate) fn sql(context: &'static str) -> impl Fn(rusqlite::Error) -> PortError {
    move |e| PortError::new(context, e)
}

/// Runs one statement without parameters, prepared once per connection (transaction control
/// runs several times per write: parsing it each time is measurable).
pub(crate) fn run(conn: &Connection, statement: &'static str) -> PortResult<()> {
    conn.prepare_cached(statement)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(sql(statement))
}

/// A write as the writer thread runs it.
trait WriteJob: Send {
    /// Runs inside the group's transaction; false when it failed. May run twice: when a write
    /// of its group fails, the group is rolled back and run again.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's transaction is committed (or could not be).
    fn finish(self: Box<Self>, committed: Result<(), PortError>);
}

struct Job<T, F> {
    work: F,
    result: Option<PortResult<T>>,
    reply: oneshot::Sender<PortResult<T>>,
}

impl<T: Send, F: FnMut(&Connection) -> PortResult<T> + Send> WriteJob for Job<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), PortError>) {
        let answer = match (committed, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(PortError("the write was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Box<dyn WriteJob>>>,
    readers: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens (or creates) the database at `path`, brings its schema up to date and starts the
    /// writer thread.
    pub(crate) fn open(path: &Path) -> Result<Arc<Self>, String> {
        let conn =
            Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        configure(&conn).map_err(|e| format!("configuring {}: {e}", path.display()))?;
        migrate(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let (sender, receiver) = mpsc::channel::<Box<dyn WriteJob>>();
        std::thread::Builder::new()
            .name("hookline-sqlite-writer".into())
            .spawn(move || write_forever(conn, receiver))
            .map_err(|e| format!("starting the store's writer: {e}"))?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(sender),
            readers: Mutex::new(Vec::new()),
        }))
    }

    /// Runs `work` on the write connection, in the next group's transaction; answers once
    /// that transaction is committed. `work` may run twice (only its last run counts), so it
    /// must do nothing but write through the connection.
    pub(crate) async fn write<T, F>(&self, work: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> PortResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            work,
            result: None,
            reply,
        });
        self.writer
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| PortError("the store's writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| PortError("the store's writer has stopped".into()))?
    }

    /// Runs `work` on a read connection, in a read transaction (one snapshot), on a blocking
    /// thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> PortResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.take_reader()?;
            run(&conn, "BEGIN")?;
            let result = work(&conn);
            let end = run(&conn, "COMMIT");
            db.put_reader(conn);
            let value = result?;
            end?;
            Ok(value)
        })
        .await
        .map_err(|e| PortError::new("a store read", e))?
    }

    fn take_reader(&self) -> PortResult<Connection> {
        if let Some(conn) = self.readers.lock().unwrap().pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("opening a read connection"))?;
        conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(sql("configuring a read connection"))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        let mut readers = self.readers.lock().unwrap();
        if readers.len() < MAX_IDLE_READERS && conn.is_autocommit() {
            readers.push(conn);
        }
    }
}

fn configure(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(|e| e.to_string())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("the journal mode stayed {mode}, not WAL"));
    }
    // A commit is durable once it is in the WAL (in the OS's cache): it survives the process
    // dying (SIGKILL), not a power cut, which may lose the last commits (never corrupt).
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;",
    )
    .map_err(|e| e.to_string())?;
    // Checkpoints stay at SQLite's default (every 1,000 WAL pages, in the writer): one every
    // 4,000 pages copied hot pages back less often, but each stalled the writer four times as
    // long: the p99 at half load went from 23 ms to 49-71 ms. A checkpointer thread of its own
    // (PASSIVE, every 100 ms) gave 10-25 % more throughput but doubled that p99, and every
    // second made it 200 ms: the checkpoint's writes and fsyncs stall commits whichever thread
    // runs them (docs/BENCHMARKS.md, "Checkpoints off the writer"). The page cache stays at its
    // default too: a 16 MiB one raised the peak RSS of a 10,000-webhook fan-out to 137 MB.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Applies every migration past the file's `user_version`, each in a transaction of its own.
fn migrate(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| format!("reading the schema version: {e}"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(format!(
            "the store has schema version {version}, this Hookline knows up to {known}: run the \
             newer Hookline that wrote it"
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("migrating the schema to version {next}: {e}")
        })?;
    }
    Ok(())
}

/// The writer thread: until every sender is gone, takes what is waiting and commits it as one.
fn write_forever(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&conn, &mut group);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in group {
            job.finish(committed.clone());
        }
    }
}

/// Commits `group` in one transaction. Nearly every write succeeds, so the group first runs
/// without savepoints (a savepoint per write journals every page it touches: 3 % of the
/// server's CPU). When a write fails, that transaction is rolled back and the group runs again
/// with each write in a savepoint of its own, so the failed one is undone alone.
fn commit_group(conn: &Connection, group: &mut [Box<dyn WriteJob>]) -> Result<(), PortError> {
    run(conn, "BEGIN IMMEDIATE")?;
    // A write that ended the transaction (SQLite rolls back by itself on a full disk) counts
    // as failed even when it carried on: the writes after it must not run outside one.
    if group
        .iter_mut()
        .all(|job| job.run(conn) && !conn.is_autocommit())
    {
        return run(conn, "COMMIT");
    }
    // Some failures (a full disk) end the transaction themselves.
    if !conn.is_autocommit() {
        run(conn, "ROLLBACK")?;
    }
    run(conn, "BEGIN IMMEDIATE")?;
    for job in group.iter_mut() {
        run(conn, "SAVEPOINT job")?;
        if !job.run(conn) {
            run(conn, "ROLLBACK TO job")?;
        }
        run(conn, "RELEASE job")?;
    }
    run(conn, "COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A store with one table `t (v INTEGER PRIMARY KEY)`, in a directory of its own.
    async fn table(name: &str) -> (Arc<Db>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("hookline-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join(DB_FILE)).unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
                .map_err(sql("creating"))
        })
        .await
        .unwrap();
        (db, dir)
    }

    fn insert(conn: &Connection, v: i64) -> PortResult<()> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v])
            .map(drop)
            .map_err(sql("inserting"))
    }

    /// Holds the writer for a moment with a write of `v`, so that the writes made meanwhile
    /// are taken as one group; answers once it is committed.
    async fn holding_the_writer<F: std::future::Future>(
        db: &Arc<Db>,
        v: i64,
        meanwhile: F,
    ) -> F::Output {
        let slow = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(move |c| {
                    std::thread::sleep(Duration::from_millis(300));
                    insert(c, v)
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let output = meanwhile.await;
        slow.await.unwrap().unwrap();
        output
    }

    async fn stored(db: &Arc<Db>) -> Vec<i64> {
        db.read(|c| {
            let mut statement = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
            let rows = statement.query_map([], |row| row.get(0)).unwrap();
            Ok(rows.map(Result::unwrap).collect())
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_write_is_undone_alone_and_the_rest_of_its_group_commits() {
        let (db, dir) = table("group").await;
        let (two, three, four) = holding_the_writer(&db, 1, async {
            tokio::join!(
                db.write(|c| insert(c, 2)),
                // Its first insert succeeds, its second fails: both must be undone.
                db.write(|c| {
                    insert(c, 3)?;
                    insert(c, 3)
                }),
                db.write(|c| insert(c, 4)),
            )
        })
        .await;
        two.unwrap();
        assert!(three.is_err(), "the failing write answers its error");
        four.unwrap();
        assert_eq!(stored(&db).await, vec![1, 2, 4]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_that_ends_the_transaction_fails_its_group_and_stores_none_of_it() {
        // As SQLite ends the transaction itself on a full disk: the writes after it must not
        // be stored one by one outside a transaction.
        let (db, dir) = table("ended").await;
        let (ended, after) = holding_the_writer(&db, 1, async {
            tokio::join!(
                db.write(|c| {
                    insert(c, 2)?;
                    c.execute_batch("ROLLBACK").map_err(sql("ending"))
                }),
                db.write(|c| insert(c, 3)),
            )
        })
        .await;
        assert!(
            ended.is_err() && after.is_err(),
            "the group could not commit"
        );
        assert_eq!(
            stored(&db).await,
            vec![1],
            "nothing of that group is stored"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
