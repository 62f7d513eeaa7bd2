//! Repository locks: many writers share the repository; prune needs it alone.
//!
//! A lock is a small JSON object under `locks/`. A holder refreshes it while it works and states
//! how long it stays valid without a refresh, so a crashed holder's lock goes stale and stops
//! blocking anyone. Taking a lock is write-then-look: a writer stores its lock, then lists the
//! others; if a conflicting live lock is there it withdraws its own and fails. Two racing takers
//! may both withdraw (and retry), but never both win.

use crate::backend::Backend;
use crate::repo::RepoError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockFile {
    pub exclusive: bool,
    /// What the holder is doing (backup, prune, ...).
    pub operation: String,
    pub hostname: String,
    pub pid: u32,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds of the last refresh.
    pub refreshed: u64,
    /// The lock is stale this many seconds after its last refresh.
    pub ttl_seconds: u64,
}

impl LockFile {
    /// Stale when not refreshed in time, or at once when its holder was a process on this
    /// host that no longer runs.
    pub fn is_stale(&self, now: u64) -> bool {
        now > self.refreshed.saturating_add(self.ttl_seconds) || self.holder_is_gone()
    }

    fn holder_is_gone(&self) -> bool {
        self.hostname == hostname()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{} lock locks/{name} held by {} (pid {} on {}), refreshed {}s ago",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.operation,
            self.pid,
            self.hostname,
            now().saturating_sub(self.refreshed)
        )
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// How long a lock lives without a refresh; refreshes come every third of it.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    pub ttl: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(300),
        }
    }
}

/// A held lock; refreshed in the background until released (or dropped).
pub struct Lock {
    backend: Backend,
    key: String,
    refresher: Option<JoinHandle<()>>,
}

impl Lock {
    pub async fn shared(
        backend: &Backend,
        operation: &str,
        options: LockOptions,
    ) -> Result<Lock, RepoError> {
        Self::take(backend, operation, false, options).await
    }

    pub async fn exclusive(
        backend: &Backend,
        operation: &str,
        options: LockOptions,
    ) -> Result<Lock, RepoError> {
        Self::take(backend, operation, true, options).await
    }

    async fn take(
        backend: &Backend,
        operation: &str,
        exclusive: bool,
        options: LockOptions,
    ) -> Result<Lock, RepoError> {
        let name = crate::repo::random_hex(16)?;
        let key = format!("locks/{name}");
        let t = now();
        let file = LockFile {
            exclusive,
            operation: operation.into(),
            hostname: hostname(),
            pid: std::process::id(),
            created: t,
            refreshed: t,
            ttl_seconds: options.ttl.as_secs().max(1),
        };
        backend.put_new(&key, to_bytes(&file)).await?;
        match conflicting(backend, &name, exclusive).await {
            Ok(None) => {}
            Ok(Some(conflict)) => {
                backend.delete(&key).await?;
                return Err(RepoError::Locked(format!(
                    "the repository is in use: {conflict}"
                )));
            }
            Err(e) => {
                let _ = backend.delete(&key).await;
                return Err(e);
            }
        }
        let refresher = {
            let backend = backend.clone();
            let key = key.clone();
            let period = (options.ttl / 3).max(Duration::from_millis(300));
            tokio::spawn(async move {
                let mut file = file;
                loop {
                    tokio::time::sleep(period).await;
                    file.refreshed = now();
                    if let Err(e) = backend.put(&key, to_bytes(&file)).await {
                        tracing::warn!(lock = %key, error = %e, "could not refresh the lock");
                    }
                }
            })
        };
        tracing::debug!(lock = %key, exclusive, operation, "lock taken");
        Ok(Lock {
            backend: backend.clone(),
            key,
            refresher: Some(refresher),
        })
    }

    pub async fn release(mut self) -> Result<(), RepoError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.backend.delete(&self.key).await?;
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
            // Released without `release` (an error path): remove it in the background; if that
            // cannot run the lock simply goes stale.
            let backend = self.backend.clone();
            let key = self.key.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = backend.delete(&key).await;
                });
            }
        }
    }
}

fn to_bytes(file: &LockFile) -> Bytes {
    Bytes::from(serde_json::to_vec(file).expect("lock serializes"))
}

/// Reads every lock; returns those that are unreadable as `None` (a half-written lock of a
/// crashed holder must not block forever, so those count by their object age instead).
pub async fn list(backend: &Backend) -> Result<Vec<(String, Option<LockFile>)>, RepoError> {
    let mut out = Vec::new();
    for listed in backend.list("locks").await? {
        let name = listed.key.trim_start_matches("locks/").to_string();
        match backend.get(&listed.key).await {
            Ok(bytes) => out.push((name, serde_json::from_slice(&bytes).ok())),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn conflicting(
    backend: &Backend,
    own: &str,
    exclusive: bool,
) -> Result<Option<String>, RepoError> {
    let t = now();
    for (name, file) in list(backend).await? {
        if name == own {
            continue;
        }
        let Some(file) = file else {
            tracing::warn!(lock = %name, "unreadable lock file ignored");
            continue;
        };
        if file.is_stale(t) {
            tracing::warn!(lock = %name, "stale lock ignored: {}", file.describe(&name));
            continue;
        }
        if exclusive || file.exclusive {
            return Ok(Some(file.describe(&name)));
        }
    }
    Ok(None)
}

/// Removes stale locks (or all, with `all`); returns how many.
pub async fn remove_stale(backend: &Backend, all: bool) -> Result<usize, RepoError> {
    let t = now();
    let mut removed = 0;
    for (name, file) in list(backend).await? {
        if all || file.is_none_or(|f| f.is_stale(t)) {
            backend.delete(&format!("locks/{name}")).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_locks_coexist_and_exclude_prune_until_stale() {
        let b = Backend::open("memory://").unwrap();
        let short = LockOptions {
            ttl: Duration::from_secs(1),
        };
        let a = Lock::shared(&b, "backup", short).await.unwrap();
        let c = Lock::shared(&b, "backup", short).await.unwrap();
        let err = Lock::exclusive(&b, "prune", short).await.err().unwrap();
        assert!(err.to_string().contains("shared lock"), "{err}");
        assert_eq!(list(&b).await.unwrap().len(), 2, "the loser withdrew");
        a.release().await.unwrap();
        c.release().await.unwrap();
        let p = Lock::exclusive(&b, "prune", short).await.unwrap();
        let err = Lock::shared(&b, "backup", short).await.err().unwrap();
        assert!(err.to_string().contains("held by prune"), "{err}");
        // A crashed holder: stop refreshing without removing the lock.
        let mut crashed = p;
        crashed.refresher.take().unwrap().abort();
        std::mem::forget(crashed);
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let again = Lock::exclusive(&b, "prune", short).await.unwrap();
        again.release().await.unwrap();
        assert_eq!(remove_stale(&b, false).await.unwrap(), 1);
        assert!(list(&b).await.unwrap().is_empty());
    }
}
