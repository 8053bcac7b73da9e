//! Progress display: a bar on a terminal, plain periodic lines otherwise, nothing with --json.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::{Progress, ProgressFn};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// How progress is shown for one transfer.
pub struct ProgressView {
    bar: Option<ProgressBar>,
    label: Arc<Mutex<String>>,
}

impl ProgressView {
    /// A view for a transfer labelled `label`. `quiet` (e.g. `--json`) shows nothing.
    pub fn new(label: &str, quiet: bool) -> (Self, Option<ProgressFn>) {
        let shared = Arc::new(Mutex::new(label.to_owned()));
        if quiet {
            return (Self { bar: None, label: shared }, None);
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            let b = bar.clone();
            let f: ProgressFn = Arc::new(move |p: Progress| {
                if let Some(t) = p.total {
                    b.set_length(t);
                }
                b.set_position(p.done);
            });
            return (Self { bar: Some(bar), label: shared }, Some(f));
        }
        let label = shared.clone();
        let state = Mutex::new((Instant::now(), Instant::now(), None::<u64>, None::<u64>));
        let f: ProgressFn = Arc::new(move |p: Progress| {
            let Ok(mut s) = state.lock() else { return };
            let (started, last, first, printed) = &mut *s;
            let first = *first.get_or_insert(p.done);
            let finished = p.total == Some(p.done);
            if *printed == Some(p.done) || (last.elapsed() < Duration::from_secs(5) && !finished) {
                return;
            }
            *last = Instant::now();
            *printed = Some(p.done);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let rate = p.done.saturating_sub(first) as f64 / secs;
            let label = label.lock().map(|l| l.clone()).unwrap_or_default();
            match p.total {
                Some(t) if t > 0 => eprintln!(
                    "{label}: {:.0}% {}/{} {}/s",
                    p.done as f64 * 100.0 / t as f64,
                    HumanBytes(p.done),
                    HumanBytes(t),
                    HumanBytes(rate as u64)
                ),
                _ => eprintln!("{label}: {} {}/s", HumanBytes(p.done), HumanBytes(rate as u64)),
            }
        });
        (Self { bar: None, label: shared }, Some(f))
    }

    /// Changes the label (e.g. the path a direct transfer takes now).
    pub fn set_label(&self, label: &str) {
        if let Ok(mut l) = self.label.lock() {
            label.clone_into(&mut l);
        }
        if let Some(b) = &self.bar {
            b.set_message(label.to_owned());
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
