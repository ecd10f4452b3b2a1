//! Where the SAML CPU work runs (parsing and verifying XML): on tokio's blocking pool, at most
//! one job per core at a time. A burst of responses then queues here, in arrival order, rather
//! than starting hundreds of blocking threads that share the cores and stall each other, and
//! the async workers stay free to answer other requests.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

static CORES: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)));

/// Runs `job` on the blocking pool once a core is free.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let _core = CORES
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("the SAML work queue closed: {e}"))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| anyhow::anyhow!("SAML work did not finish: {e}"))
}
