//! Where the SAML CPU work runs (parsing and verifying XML): in place, on the async worker that
//! received the response, at most one job per core at a time. A burst of responses queues here,
//! in arrival order, and the jobs that run never outnumber the cores.
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

static CORES: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)));

/// Runs `job` once a core is free. A panic in it (a defect in the XML libraries' bindings) is
/// an error of this request, as it was on the blocking pool, not a dropped connection.
pub async fn run<T>(job: impl FnOnce() -> T) -> anyhow::Result<T> {
    let _core = CORES
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
        // The permit of the panicked job came back: every core is free again.
        assert_eq!(
            CORES.available_permits(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }
}
