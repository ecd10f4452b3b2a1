//! Group commit. Under load many requests each write a little and commit on their own: on
//! SQLite each takes the one writing connection (and its round trips), on PostgreSQL each is a
//! transaction of its own. A [`Committer`] hands each request's job to one task, which does
//! every job waiting at the time together ([`Grouped::together`]: one transaction, or one
//! statement) and answers each caller when that commit has returned: what a caller is told is
//! as durable as before. A job that waits alone is done on its own ([`Grouped::alone`]); one
//! submitted while no other is under way is done alone on the caller's own task, so that one
//! caller at a time sees nothing change, not even a hand-off between tasks (a job submitted
//! while it runs goes to the committer, and may run beside it, as two requests would). A group
//! that fails is done again job by job, so that each caller gets its own job's outcome (a unique
//! violation, a row gone, reaches only the job it belongs to).
//!
//! [`GroupInsert`] is the simplest such work: rows of one table in one multi-row `INSERT`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::batch::bound;
use super::{Db, Param};

/// Work that many callers' jobs can share: done together, or one job alone.
pub trait Grouped: Send + Sync + 'static {
    type Job: Send + Sync + 'static;
    type Answer: Send + 'static;

    /// Every job of `jobs` at once, committed once: one answer per job, in order. An error
    /// leaves nothing of the group, whose jobs are then done [`Grouped::alone`].
    fn together(
        &self,
        jobs: &[Self::Job],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send;

    /// One job on its own, committed.
    fn alone(
        &self,
        job: &Self::Job,
    ) -> impl Future<Output = Result<Self::Answer, sqlx::Error>> + Send;
}

/// Hands jobs to one committer task that does those waiting together (see the module's text).
/// Clones share the committer.
pub struct Committer<G: Grouped> {
    inner: Arc<Inner<G>>,
}

impl<G: Grouped> Clone for Committer<G> {
    fn clone(&self) -> Self {
        Committer {
            inner: self.inner.clone(),
        }
    }
}

type Answering<G> = oneshot::Sender<Result<<G as Grouped>::Answer, sqlx::Error>>;
/// A job on its way to the committer, with where its answer goes.
type Queued<G> = (<G as Grouped>::Job, Answering<G>);

struct Inner<G: Grouped> {
    work: G,
    /// The most jobs in one group.
    max: usize,
    /// The committer's queue; a new committer starts when there is none or it ended (its
    /// runtime shut down).
    queue: Mutex<Option<mpsc::UnboundedSender<Queued<G>>>>,
    /// Jobs submitted and not answered yet (their callers still waiting).
    under_way: AtomicUsize,
    /// Groups of two jobs or more begun together, and those of them that failed.
    groups: AtomicU64,
    failed: AtomicU64,
}

impl<G: Grouped> Committer<G> {
    /// Groups of at most `max` jobs of `work`.
    pub fn new(work: G, max: usize) -> Self {
        Committer {
            inner: Arc::new(Inner {
                work,
                max: max.max(1),
                queue: Mutex::new(None),
                under_way: AtomicUsize::new(0),
                groups: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// The work it does.
    pub fn work(&self) -> &G {
        &self.inner.work
    }

    /// How many groups of two jobs or more it has begun together (failed ones too).
    pub fn groups(&self) -> u64 {
        self.inner.groups.load(Ordering::Relaxed)
    }

    /// How many of those groups failed and were done again job by job.
    pub fn failed_groups(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Does `job`, with the jobs waiting beside it, and returns when it is committed: its own
    /// answer, or its own error. A job submitted while no other is under way is done on the
    /// caller's own task, alone, with no hand-off; jobs submitted meanwhile go to the committer.
    pub async fn submit(&self, job: G::Job) -> Result<G::Answer, sqlx::Error> {
        let under_way = UnderWay::enter(&self.inner.under_way);
        if under_way.first {
            return self.inner.work.alone(&job).await;
        }
        let (done, answer) = oneshot::channel();
        let job = match self.queue().send((job, done)) {
            Ok(()) => return answer.await.unwrap_or_else(|_| Err(gone())),
            Err(mpsc::error::SendError((job, _))) => job,
        };
        // No committer to take it (its runtime is shutting down): on its own.
        self.inner.work.alone(&job).await
    }

    fn queue(&self) -> mpsc::UnboundedSender<Queued<G>> {
        let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = queue.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(commit_groups(self.inner.clone(), receiver));
        *queue = Some(sender.clone());
        sender
    }
}

/// The committer: every job waiting, up to the group's size, together; then the next.
async fn commit_groups<G: Grouped>(
    inner: Arc<Inner<G>>,
    mut receiver: mpsc::UnboundedReceiver<Queued<G>>,
) {
    while let Some(first) = receiver.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < inner.max {
            match receiver.try_recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        let (jobs, answers): (Vec<G::Job>, Vec<Answering<G>>) = waiting.into_iter().unzip();
        if let [job] = jobs.as_slice() {
            let outcome = inner.work.alone(job).await;
            let _ = answers.into_iter().next().map(|a| a.send(outcome));
            continue;
        }
        inner.groups.fetch_add(1, Ordering::Relaxed);
        match inner.work.together(&jobs).await {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let err = sqlx::Error::Protocol(format!(
                    "a group of {} jobs gave {} answers",
                    jobs.len(),
                    outcomes.len()
                ));
                tracing::error!(error = %err, "group commit");
                for answer in answers {
                    let _ = answer.send(Err(sqlx::Error::Protocol(err.to_string())));
                }
            }
            Err(err) => {
                inner.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %err, jobs = jobs.len(), "a group failed; job by job");
                for (job, answer) in jobs.iter().zip(answers) {
                    let _ = answer.send(inner.work.alone(job).await);
                }
            }
        }
    }
}

/// A caller's job counted as under way until the caller stops waiting (answered, or gone).
struct UnderWay<'a> {
    count: &'a AtomicUsize,
    /// Whether no other job was under way when it was submitted.
    first: bool,
}

impl<'a> UnderWay<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let first = count.fetch_add(1, Ordering::AcqRel) == 0;
        UnderWay { count, first }
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

fn gone() -> sqlx::Error {
    sqlx::Error::Protocol("the group's committer ended before answering".to_string())
}

/// The most rows in one statement: the parameters of a group stay far below either
/// database's limit (SQLite's 32,766), and a group's statement text stays short.
const MAX_ROWS: usize = 64;

/// Inserts into one table by group commit: the rows waiting in one multi-row `INSERT`, one
/// commit. Clones share the committer.
#[derive(Clone)]
pub struct GroupInsert {
    committer: Committer<Rows>,
}

struct Rows {
    db: Db,
    /// `INSERT INTO table (columns...)`, without `VALUES`.
    head: &'static str,
    columns: usize,
    statements: AtomicU64,
    /// PostgreSQL's statement for several rows, made at the first such group (its integer
    /// columns are those of that group's first row).
    json_insert: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for GroupInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupInsert")
            .field("head", &self.committer.work().head)
            .finish()
    }
}

impl GroupInsert {
    /// Inserts through `db`'s writer with `head` (`INSERT INTO t (a, b)`, a table and columns
    /// of the code, never input), rows of `columns` values.
    pub fn new(db: Db, head: &'static str, columns: usize) -> Self {
        let rows = Rows {
            db,
            head,
            columns,
            statements: AtomicU64::new(0),
            json_insert: std::sync::OnceLock::new(),
        };
        GroupInsert {
            committer: Committer::new(rows, MAX_ROWS),
        }
    }

    /// Inserts `row` and returns when it is committed: its own error when it could not be.
    pub async fn insert(&self, row: Vec<Param>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.committer.work().columns);
        self.committer.submit(row).await
    }

    /// How many `INSERT` statements it has sent (groups, and rows inserted again one by one).
    pub fn statements(&self) -> u64 {
        self.committer.work().statements.load(Ordering::Relaxed)
    }
}

impl Grouped for Rows {
    type Job = Vec<Param>;
    type Answer = ();

    async fn together(&self, rows: &[Vec<Param>]) -> Result<Vec<()>, sqlx::Error> {
        self.execute(rows).await?;
        Ok(vec![(); rows.len()])
    }

    async fn alone(&self, row: &Vec<Param>) -> Result<(), sqlx::Error> {
        self.execute(std::slice::from_ref(row)).await
    }
}

impl Rows {
    /// One `INSERT` of `rows`, committed on its own: one row a `VALUES` list, except on
    /// PostgreSQL, where several rows go as one JSON parameter ([`super::json_rows`]) so that
    /// the statement's text is the same whatever the group's size (each new text is parsed and
    /// planned again for each connection that meets it; SQLite's one writing connection keeps
    /// each text's prepared statement).
    async fn execute(&self, rows: &[Vec<Param>]) -> Result<(), sqlx::Error> {
        let (sql, values) = if self.db.dialect() == super::Dialect::Postgres && rows.len() > 1 {
            let sql = self.json_insert.get_or_init(|| {
                // A column of integers in the first row is one in every row.
                let ints: Vec<usize> = (rows[0].iter().enumerate())
                    .filter(|(_, p)| matches!(p, Param::Int(_)))
                    .map(|(i, _)| i)
                    .collect();
                let columns: Vec<String> = (0..self.columns).map(|c| format!("c{c}")).collect();
                let from = super::json_rows(super::Dialect::Postgres, "$1", self.columns, &ints);
                format!(
                    "{} SELECT {} FROM ({from}) AS r",
                    self.head,
                    columns.join(", ")
                )
            });
            (sql.clone(), vec![super::json_rows_text(rows.to_vec())])
        } else {
            let mut sql = format!("{} VALUES ", self.head);
            let mut values = Vec::with_capacity(rows.len() * self.columns);
            for (r, row) in rows.iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                let placeholders: Vec<String> = (1..=self.columns)
                    .map(|c| format!("${}", values.len() + c))
                    .collect();
                sql.push('(');
                sql.push_str(&placeholders.join(", "));
                sql.push(')');
                values.extend(row.iter().cloned());
            }
            (sql, values)
        };
        self.statements.fetch_add(1, Ordering::Relaxed);
        let mut writing = self.db.write().await?;
        writing.execute(bound(&sql, values)).await?;
        writing.done();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Notify;
    use tokio::task::Id;

    use super::*;

    /// Work that notes which task did each job alone, a job `0` waiting for `go` first.
    #[derive(Default)]
    struct Noting {
        go: Notify,
        alone: Mutex<Vec<(u32, Option<Id>)>>,
    }

    impl Grouped for Arc<Noting> {
        type Job = u32;
        type Answer = Option<Id>;

        async fn together(&self, jobs: &[u32]) -> Result<Vec<Option<Id>>, sqlx::Error> {
            Ok(jobs.iter().map(|_| None).collect())
        }

        async fn alone(&self, job: &u32) -> Result<Option<Id>, sqlx::Error> {
            if *job == 0 {
                self.go.notified().await;
            }
            let id = tokio::task::try_id();
            self.alone.lock().unwrap().push((*job, id));
            Ok(id)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_with_nothing_under_way_runs_on_its_callers_task() {
        let noting = Arc::new(Noting::default());
        let committer = Committer::new(noting.clone(), 8);
        // Nothing under way: job 0 runs on the task that submitted it.
        let first = {
            let committer = committer.clone();
            tokio::spawn(async move {
                let answer = committer.submit(0).await.unwrap();
                (answer, tokio::task::id())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Job 0 under way: job 1 goes to the committer's task, and is not held up by job 0.
        let second = {
            let committer = committer.clone();
            tokio::spawn(async move {
                let answer = committer.submit(1).await.unwrap();
                (answer, tokio::task::id())
            })
        };
        // A bound on the wait, so that job 1 queued behind job 0 fails the test instead of
        // hanging it.
        let (answer, caller) = tokio::time::timeout(std::time::Duration::from_secs(30), second)
            .await
            .expect("job 1 waited for job 0")
            .unwrap();
        assert!(answer.is_some_and(|done_by| done_by != caller));
        noting.go.notify_one();
        let (answer, caller) = first.await.unwrap();
        assert_eq!(answer, Some(caller));
        assert_eq!(committer.groups(), 0);
        // Answered, nothing is under way: the next job runs on its caller's task again.
        let (answer, caller) = tokio::spawn({
            let committer = committer.clone();
            async move { (committer.submit(2).await.unwrap(), tokio::task::id()) }
        })
        .await
        .unwrap();
        assert_eq!(answer, Some(caller));
        let order: Vec<u32> = noting
            .alone
            .lock()
            .unwrap()
            .iter()
            .map(|(j, _)| *j)
            .collect();
        assert_eq!(order, [1, 0, 2]);
    }
}
