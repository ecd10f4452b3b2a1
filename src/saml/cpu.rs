//! Where the SAML CPU work runs (parsing and verifying XML): in place, on the async worker that
//! received the response, one job fewer at a time than there are cores, and at least one
//! ([`jobs_for`]). A burst of responses queues here, in arrival order.
//!
//! In place rather than on tokio's blocking pool: handing a job to a blocking thread and its
//! result back wakes two threads, four per sign-in (the outline and the signatures), and on two
//! cores those hand-offs cost more than the job's own wait (measured: 484–504 sign-ins/s through
//! the blocking pool, 531–542 in place, README "Performance"). A job is bounded by the ACS body
//! limit ([`super::acs::MAX_BODY`]) and the outline's checks, a few milliseconds at most: the
//! same kind and size of work as the TLS handshake a server terminating TLS runs on its workers.
//! Password hashing, which takes tens of milliseconds, stays on the blocking pool.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

static JOBS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(jobs()));

/// How many jobs run at once on this machine ([`jobs_for`] its cores).
fn jobs() -> usize {
    jobs_for(std::thread::available_parallelism().map_or(1, usize::from))
}

/// How many jobs run at once on `cores` cores: one fewer, and at least one. A job holds its
/// worker until it ends, and that worker moves nothing else meanwhile; the one left free keeps
/// the database's answers moving. On SQLite a sign-in holds the one writing connection across
/// several hand-offs between the connection's thread and the async workers, and every other
/// sign-in waits for that writer (on two cores, one job at a time gave 8% more sign-ins per
/// second on SQLite at 32 clients than two did, and no fewer on PostgreSQL:
/// docs/performance.md, "The writer is the bound").
fn jobs_for(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// Runs `job` once a job's place is free. A panic in it (a defect in the XML libraries'
/// bindings) is an error of this request, as it was on the blocking pool, not a dropped
/// connection.
pub async fn run<T>(job: impl FnOnce() -> T) -> anyhow::Result<T> {
    let _place = JOBS
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("the SAML work queue closed: {e}"))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
        .map_err(|_| anyhow::anyhow!("SAML work did not finish: it panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_and_a_panicking_job_is_an_error() {
        assert_eq!(run(|| 2 + 2).await.unwrap(), 4);
        let err = run(|| -> u8 { panic!("a defect") }).await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        // The permit of the panicked job came back: every job's place is free again.
        assert_eq!(JOBS.available_permits(), jobs());
    }

    #[test]
    fn one_worker_is_left_free_and_one_job_always_runs() {
        assert_eq!(jobs_for(0), 1);
        assert_eq!(jobs_for(1), 1);
        assert_eq!(jobs_for(2), 1);
        assert_eq!(jobs_for(8), 7);
    }
}
