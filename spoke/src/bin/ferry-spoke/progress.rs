//! Progress on the terminal (a bar), as JSON lines for programs, or not at all.

use ferry_repository::progress::{ProgressEvent, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    Auto,
    Bar,
    /// One JSON object per event on stderr.
    Json,
    None,
}

pub fn sink(mode: ProgressMode) -> Option<ProgressFn> {
    match mode {
        ProgressMode::None => None,
        ProgressMode::Auto if !std::io::stderr().is_terminal() => None,
        ProgressMode::Json => Some(Arc::new(|e: &ProgressEvent| {
            let line = serde_json::json!({
                "operation": e.operation,
                "bytesDone": e.bytes_done,
                "bytesTotal": e.bytes_total,
                "filesDone": e.files_done,
                "filesTotal": e.files_total,
                "elapsedSeconds": e.elapsed.as_secs_f64(),
                "bytesPerSecond": e.bytes_per_second,
                "etaSeconds": e.eta.map(|d| d.as_secs_f64()),
                "finished": e.finished,
            });
            eprintln!("{line}");
        })),
        ProgressMode::Auto | ProgressMode::Bar => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Some(Arc::new(move |e: &ProgressEvent| {
                bar.set_message(e.operation);
                if let Some(total) = e.bytes_total {
                    bar.set_length(total);
                }
                bar.set_position(e.bytes_done);
                if e.finished {
                    bar.finish();
                }
            }))
        }
    }
}
