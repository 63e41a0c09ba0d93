//! The embedded queue for the `local-dev` profile: SQS semantics on one SQLite file.
//!
//! - A received message is hidden for its visibility timeout and comes back if not deleted.
//! - Each receive increments its receive count and issues a new receipt handle; an old handle no
//!   longer deletes it (the message may be in another consumer's hands).
//! - A message received `max_receive_count` times moves to the dead-letter queue on its next
//!   receive, as SQS's redrive policy does.
//! - Everything is on disk (SQLite, WAL), so it survives restarts, and several processes (a CLI
//!   enqueueing while a worker runs) can share the file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{BatchFailure, Message, Queue, QueueDepth};
use crate::{Error, Result, now_ms};

/// Poll interval of a long-poll receive on an empty queue.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Dead-letter routing of a local queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue: String,
    pub max_receive_count: u32,
}

/// One named queue in a SQLite database file; several queues share a file.
#[derive(Clone)]
pub struct LocalQueue {
    conn: Arc<Mutex<Connection>>,
    name: String,
    dead_letter: Option<DeadLetter>,
}

fn db_error(operation: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Backend {
        service: "local-queue",
        operation,
        transient: matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ),
        message: e.to_string(),
    }
}

impl LocalQueue {
    /// Open (creating if needed) the queue `name` in the database at `path`.
    pub fn open(path: &Path, name: &str, dead_letter: Option<DeadLetter>) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path).map_err(db_error("open"))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_error("open"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS messages (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 queue TEXT NOT NULL,
                 message_id TEXT NOT NULL,
                 body TEXT NOT NULL,
                 sent_at INTEGER NOT NULL,
                 visible_at INTEGER NOT NULL,
                 receive_count INTEGER NOT NULL DEFAULT 0,
                 receipt TEXT
             );
             CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at, seq);
             CREATE UNIQUE INDEX IF NOT EXISTS messages_by_receipt ON messages (receipt);",
        )
        .map_err(db_error("open"))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), name: name.to_owned(), dead_letter })
    }

    /// Another queue in the same database file (e.g. the DLQ of this one).
    pub fn sibling(&self, name: &str, dead_letter: Option<DeadLetter>) -> Self {
        Self { conn: self.conn.clone(), name: name.to_owned(), dead_letter }
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str, Option<&DeadLetter>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        let name = self.name.clone();
        let dl = self.dead_letter.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard, &name, dl.as_ref())
        })
        .await
        .map_err(|e| Error::Backend {
            service: "local-queue",
            operation: "task",
            message: e.to_string(),
            transient: true,
        })?
    }

    fn receive_now(
        conn: &mut Connection,
        queue: &str,
        dl: Option<&DeadLetter>,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<Message>> {
        let now = now_ms() as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error("receive"))?;
        let mut out = Vec::new();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT seq, message_id, body, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
                )
                .map_err(db_error("receive"))?;
            // Over-fetch so messages moved to the DLQ do not shrink the batch.
            let rows: Vec<(i64, String, String, u32)> = select
                .query_map(params![queue, now, (max as i64) * 2], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(db_error("receive"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(db_error("receive"))?;
            for (seq, message_id, body, count) in rows {
                if out.len() as u32 >= max {
                    break;
                }
                if let Some(dl) = dl.filter(|dl| count >= dl.max_receive_count) {
                    tx.execute(
                        "UPDATE messages SET queue = ?1, visible_at = ?2, receive_count = 0, receipt = NULL WHERE seq = ?3",
                        params![dl.queue, now, seq],
                    )
                    .map_err(db_error("receive"))?;
                    tracing::debug!(%message_id, receives = count, dlq = %dl.queue, "moved to dead-letter queue");
                    continue;
                }
                let receipt = format!("{seq}:{}", uuid::Uuid::new_v4().simple());
                tx.execute(
                    "UPDATE messages SET visible_at = ?1, receive_count = receive_count + 1, receipt = ?2 WHERE seq = ?3",
                    params![now + visibility.as_millis() as i64, receipt, seq],
                )
                .map_err(db_error("receive"))?;
                out.push(Message { message_id, receipt_handle: receipt, body, receive_count: count + 1 });
            }
        }
        tx.commit().map_err(db_error("receive"))?;
        Ok(out)
    }
}

fn invalid_receipt(index: usize) -> BatchFailure {
    BatchFailure {
        index,
        code: "ReceiptHandleIsInvalid".into(),
        message: "no message with this receipt handle (deleted, or received again since)".into(),
    }
}

#[async_trait]
impl Queue for LocalQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn max_receive_count(&self) -> Result<Option<u32>> {
        Ok(self.dead_letter.as_ref().map(|dl| dl.max_receive_count))
    }

    async fn receive(&self, max: u32, wait: Duration, visibility: Duration) -> Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let batch =
                self.with_conn(move |c, q, dl| Self::receive_now(c, q, dl, max.clamp(1, 10), visibility)).await?;
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<BatchFailure>> {
        let handles = receipt_handles.to_vec();
        self.with_conn(move |c, q, _| {
            let tx = c.transaction().map_err(db_error("delete"))?;
            let mut failed = Vec::new();
            for (i, r) in handles.iter().enumerate() {
                let n = tx
                    .execute("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2", params![q, r])
                    .map_err(db_error("delete"))?;
                if n == 0 {
                    failed.push(invalid_receipt(i));
                }
            }
            tx.commit().map_err(db_error("delete"))?;
            Ok(failed)
        })
        .await
    }

    async fn change_visibility_batch(&self, entries: &[(String, Duration)]) -> Result<Vec<BatchFailure>> {
        let entries = entries.to_vec();
        self.with_conn(move |c, q, _| {
            let now = now_ms() as i64;
            let tx = c.transaction().map_err(db_error("change_visibility"))?;
            let mut failed = Vec::new();
            for (i, (r, d)) in entries.iter().enumerate() {
                let n = tx
                    .execute(
                        "UPDATE messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3",
                        params![now + d.as_millis() as i64, q, r],
                    )
                    .map_err(db_error("change_visibility"))?;
                if n == 0 {
                    failed.push(invalid_receipt(i));
                }
            }
            tx.commit().map_err(db_error("change_visibility"))?;
            Ok(failed)
        })
        .await
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<BatchFailure>> {
        let bodies = bodies.to_vec();
        self.with_conn(move |c, q, _| {
            let now = now_ms() as i64;
            let tx = c.transaction().map_err(db_error("send"))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO messages (queue, message_id, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                    )
                    .map_err(db_error("send"))?;
                for body in &bodies {
                    insert
                        .execute(params![q, uuid::Uuid::new_v4().to_string(), body, now])
                        .map_err(db_error("send"))?;
                }
            }
            tx.commit().map_err(db_error("send"))?;
            Ok(Vec::new())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        self.with_conn(|c, q, _| {
            let now = now_ms() as i64;
            c.query_row(
                "SELECT
                    COALESCE(SUM(visible_at <= ?2), 0),
                    COALESCE(SUM(visible_at > ?2 AND receipt IS NOT NULL), 0),
                    COALESCE(SUM(visible_at > ?2 AND receipt IS NULL), 0)
                 FROM messages WHERE queue = ?1",
                params![q, now],
                |r| {
                    Ok(QueueDepth {
                        visible: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        delayed: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()
            .map_err(db_error("depth"))
            .map(Option::unwrap_or_default)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max_receives: u32) -> (LocalQueue, LocalQueue) {
        let path = dir.join("q.sqlite3");
        let q = LocalQueue::open(
            &path,
            "jobs",
            Some(DeadLetter { queue: "jobs-dlq".into(), max_receive_count: max_receives }),
        )
        .unwrap();
        let dlq = q.sibling("jobs-dlq", None);
        (q, dlq)
    }

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn visibility_hides_and_returns_messages_with_rising_receive_count() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _) = open(dir.path(), 5);
        q.send_batch(&["a".into()]).await.unwrap();
        let first = q.receive(10, NO_WAIT, Duration::from_millis(200)).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(q.receive(10, NO_WAIT, Duration::from_secs(1)).await.unwrap().is_empty(), "hidden while in flight");
        assert_eq!(q.depth().await.unwrap(), QueueDepth { visible: 0, in_flight: 1, delayed: 0 });
        tokio::time::sleep(Duration::from_millis(250)).await;
        let second = q.receive(10, NO_WAIT, Duration::from_secs(30)).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].receive_count, 2);
        assert_eq!(second[0].message_id, first[0].message_id);
        // The first receipt is stale: it must not delete the message now held by someone else.
        let failed = q.delete_batch(&[first[0].receipt_handle.clone()]).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].code, "ReceiptHandleIsInvalid");
        assert!(q.delete_batch(&[second[0].receipt_handle.clone()]).await.unwrap().is_empty());
        assert_eq!(q.depth().await.unwrap().total(), 0);
    }

    #[tokio::test]
    async fn change_visibility_releases_and_delays() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _) = open(dir.path(), 5);
        q.send_batch(&["a".into(), "b".into()]).await.unwrap();
        let got = q.receive(10, NO_WAIT, Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.len(), 2);
        let failed = q
            .change_visibility_batch(&[
                (got[0].receipt_handle.clone(), Duration::ZERO),
                ("bogus".into(), Duration::ZERO),
            ])
            .await
            .unwrap();
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1]);
        let again = q.receive(10, NO_WAIT, Duration::from_secs(60)).await.unwrap();
        assert_eq!(again.len(), 1, "only the released message is visible");
        assert_eq!(again[0].body, "a");
    }

    #[tokio::test]
    async fn dead_letters_after_max_receives() {
        let dir = tempfile::tempdir().unwrap();
        let (q, dlq) = open(dir.path(), 2);
        q.send_batch(&["poison".into(), "fine".into()]).await.unwrap();
        for _ in 0..2 {
            let got = q.receive(10, NO_WAIT, Duration::ZERO).await.unwrap();
            assert_eq!(got.len(), 2);
        }
        // Third receive: both exceeded two receives and move to the DLQ instead.
        assert!(q.receive(10, NO_WAIT, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(dlq.depth().await.unwrap().visible, 2);
        let dead = dlq.receive(10, NO_WAIT, Duration::from_secs(5)).await.unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].receive_count, 1, "receive count restarts in the DLQ");
    }

    #[tokio::test]
    async fn survives_reopen_and_redrives() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_, dlq) = open(dir.path(), 2);
            dlq.send_batch(&(0..25).map(|i| format!("m{i}")).collect::<Vec<_>>()).await.unwrap();
        }
        let (q, dlq) = open(dir.path(), 2);
        assert_eq!(dlq.depth().await.unwrap().visible, 25, "persisted across reopen");
        let report = dlq.redrive_to(&q).await.unwrap();
        assert_eq!(report, super::super::RedriveReport::Moved(25));
        assert_eq!(dlq.depth().await.unwrap().total(), 0);
        assert_eq!(q.depth().await.unwrap().visible, 25);
    }

    #[tokio::test]
    async fn long_poll_sees_messages_sent_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _) = open(dir.path(), 5);
        let other = LocalQueue::open(&dir.path().join("q.sqlite3"), "jobs", None).unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            other.send_batch(&["late".into()]).await.unwrap();
        });
        let got = q.receive(10, Duration::from_secs(5), Duration::from_secs(30)).await.unwrap();
        sender.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "late");
    }
}
