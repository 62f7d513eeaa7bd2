//! Tasks on the compute pool (rayon's global pool), where backups seal blobs and restores open
//! and write them.

/// Runs `task` on the compute pool. A task that panics is logged and dropped with what it owns —
/// its result channel closes, which its waiter reports as a failed operation — instead of
/// aborting the process, which is what rayon does with a panic in a spawned task: a bug in the
/// handling of one blob must fail that backup or restore, not a spoke running others.
pub(crate) fn spawn(task: impl FnOnce() + Send + 'static) {
    rayon::spawn(move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%message, "a compute task panicked; its operation fails");
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panicking_task_fails_its_waiter_not_the_process() {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        super::spawn(move || {
            let _owned = tx;
            panic!("a bug in one blob's handling");
        });
        assert!(rx.recv().is_err(), "the task's channel closes");
        // The pool still runs tasks (an abort would have ended this test's process).
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn(move || tx.send(7).unwrap_or(()));
        assert_eq!(rx.recv().ok(), Some(7));
    }
}
