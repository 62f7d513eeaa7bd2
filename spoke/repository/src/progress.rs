//! Progress of long operations, as events a caller can consume (a progress bar, a NATS
//! message, a log line).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    /// `backup`, `restore`, `check`, `prune`, `export`.
    pub operation: &'static str,
    pub bytes_done: u64,
    /// Known once the source has been measured; `None` until then.
    pub bytes_total: Option<u64>,
    pub files_done: u64,
    pub files_total: Option<u64>,
    pub elapsed: Duration,
    pub bytes_per_second: f64,
    pub eta: Option<Duration>,
    /// The last event of the operation.
    pub finished: bool,
}

/// Receives events about twice a second, and once more at the end.
pub type ProgressFn = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// Counters the workers bump; turned into events by [`Progress::report`].
#[derive(Debug)]
pub struct Progress {
    operation: &'static str,
    start: Instant,
    pub bytes_done: AtomicU64,
    pub files_done: AtomicU64,
    bytes_total: AtomicU64,
    files_total: AtomicU64,
    total_known: AtomicBool,
}

impl Progress {
    pub fn new(operation: &'static str) -> Arc<Progress> {
        Arc::new(Progress {
            operation,
            start: Instant::now(),
            bytes_done: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            total_known: AtomicBool::new(false),
        })
    }

    pub fn add(&self, bytes: u64, files: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.files_done.fetch_add(files, Ordering::Relaxed);
    }

    pub fn set_total(&self, bytes: u64, files: u64) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.files_total.store(files, Ordering::Relaxed);
        self.total_known.store(true, Ordering::Release);
    }

    pub fn event(&self, finished: bool) -> ProgressEvent {
        let elapsed = self.start.elapsed();
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let known = self.total_known.load(Ordering::Acquire);
        let bytes_total = known.then(|| self.bytes_total.load(Ordering::Relaxed));
        let rate = bytes_done as f64 / elapsed.as_secs_f64().max(1e-3);
        let eta = bytes_total.and_then(|t| {
            (rate > 0.0)
                .then(|| Duration::from_secs_f64(t.saturating_sub(bytes_done) as f64 / rate))
        });
        ProgressEvent {
            operation: self.operation,
            bytes_done,
            bytes_total,
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: known.then(|| self.files_total.load(Ordering::Relaxed)),
            elapsed,
            bytes_per_second: rate,
            eta: if finished { Some(Duration::ZERO) } else { eta },
            finished,
        }
    }

    /// Sends events to `sink` every `period` until the returned guard is finished or dropped.
    pub fn report(self: &Arc<Self>, sink: Option<ProgressFn>, period: Duration) -> Reporter {
        let task = sink.clone().map(|sink| {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    sink(&me.event(false));
                }
            })
        });
        Reporter {
            progress: self.clone(),
            sink,
            task,
        }
    }
}

pub struct Reporter {
    progress: Arc<Progress>,
    sink: Option<ProgressFn>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    /// Stops the periodic events and sends the final one.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(sink) = &self.sink {
            sink(&self.progress.event(true));
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_counters() {
        let p = Progress::new("backup");
        assert_eq!(p.event(false).bytes_total, None);
        assert_eq!(p.event(false).eta, None);
        p.set_total(1000, 4);
        std::thread::sleep(Duration::from_millis(20));
        p.add(500, 2);
        let e = p.event(false);
        assert_eq!(
            (e.bytes_done, e.files_done, e.files_total),
            (500, 2, Some(4))
        );
        assert!(e.bytes_per_second > 0.0);
        let eta = e.eta.unwrap();
        assert!(
            eta > Duration::ZERO && eta < e.elapsed * 2,
            "{eta:?} vs {:?}",
            e.elapsed
        );
        assert!(p.event(true).finished);
    }
}
