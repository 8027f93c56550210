//! The server's write path: one thread applies the queued PUTs in batches, each request in its
//! own savepoint, with one commit per batch (group commit), and answers them after the commit.
//! Requests in a batch are applied in arrival order, so the outcome is the same as one by one;
//! a request that fails on our side is rolled back alone.

use std::io;
use std::sync::mpsc;

use axum::body::Bytes;
use tokio::sync::oneshot;

use super::protocol::{self, Reply};
use crate::db::{Conn, Database, DbError};

/// Most PUTs applied in one transaction.
const MAX_BATCH: usize = 256;

struct Job {
    body: Bytes,
    reply: oneshot::Sender<Reply>,
}

/// Handle on the writer thread. Dropping it lets the thread finish what is queued, and waits
/// for it, so the database connections are closed (and the WAL checkpointed) when it returns.
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(db: Database) -> io::Result<Writer> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("seamfs-db-writer".into())
            .spawn(move || run(&db, &queue))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queue one PUT body and wait for its answer (given once it is committed).
    pub async fn put(&self, body: Bytes) -> Reply {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job { body, reply }).is_ok());
        if !queued {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the database writer thread panicked");
        }
    }
}

fn stopped() -> Reply {
    Reply {
        status: 500,
        body: "ERROR: Internal server error: the database writer stopped".into(),
    }
}

fn run(db: &Database, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let replies = apply(db, &batch);
        for (job, reply) in batch.into_iter().zip(replies) {
            let _ = job.reply.send(reply); // the client may have gone
        }
    }
}

/// Apply a batch in one transaction; if the commit itself fails, every request gets a 500.
fn apply(db: &Database, batch: &[Job]) -> Vec<Reply> {
    let outcome = db.transaction(|conn| {
        batch
            .iter()
            .map(|job| in_savepoint(conn, &job.body))
            .collect::<Result<Vec<_>, DbError>>()
    });
    match outcome {
        Ok(replies) => replies,
        Err(e) => {
            let reply = protocol::internal_error(e);
            batch.iter().map(|_| reply.clone()).collect()
        }
    }
}

fn in_savepoint(conn: &Conn, body: &[u8]) -> Result<Reply, DbError> {
    let sql = conn.conn();
    sql.prepare_cached("SAVEPOINT put")?.execute([])?;
    let reply = protocol::handle_put(conn, body);
    if reply.status >= 500 {
        sql.prepare_cached("ROLLBACK TO put")?.execute([])?;
    }
    sql.prepare_cached("RELEASE put")?.execute([])?;
    Ok(reply)
}
