//! How an apply's events reach the person running it: on a terminal, a live spinner per running
//! change with its elapsed time and latest status; elsewhere (pipes, CI logs) one line per event.
//! Both print the same line when a change ends, so the transcript reads the same.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlops_provider_core::Address;

use crate::engine::apply::Event;
use crate::plan::Action;
use crate::render::Style;

fn verb(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Create => ("Creating", "Creation"),
        Action::Update => ("Updating", "Update"),
        Action::Replace => ("Replacing", "Replacement"),
        Action::Delete => ("Deleting", "Deletion"),
        Action::NoOp => ("Reading", "Read"),
    }
}

/// Live spinners only for a person at a terminal: not in CI logs, not on a dumb terminal.
pub fn live_wanted() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("CI").is_none_or(|v| v.is_empty() || v == "false")
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

pub enum ApplyProgress {
    Lines(Style),
    Live { style: Style, bars: MultiProgress, running: Mutex<HashMap<Address, ProgressBar>> },
}

impl ApplyProgress {
    pub fn new(style: Style, live: bool) -> ApplyProgress {
        if live {
            let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            ApplyProgress::Live { style, bars, running: Mutex::new(HashMap::new()) }
        } else {
            ApplyProgress::Lines(style)
        }
    }

    /// Shows one event (journal entries are not for people: ignored here).
    pub fn show(&self, event: &Event) {
        match self {
            ApplyProgress::Lines(style) => {
                if let Some(line) = line(event, style) {
                    println!("{line}");
                }
            }
            ApplyProgress::Live { style, bars, running } => {
                let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Event::Started { address, action } => {
                        let bar = bars.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                                .expect("a valid template"),
                        );
                        bar.set_prefix(address.to_string());
                        bar.set_message(format!("{}...", verb(*action).0));
                        bar.enable_steady_tick(Duration::from_millis(120));
                        running.insert(address.clone(), bar);
                    }
                    Event::Progress { address, message } => {
                        if let Some(bar) = running.get(address) {
                            bar.set_message(message.clone());
                        }
                    }
                    Event::Transfer { address, done, total } => {
                        if let Some(bar) = running.get(address) {
                            if bar.length() != Some(*total) {
                                bar.set_style(
                                    ProgressStyle::with_template(
                                        "{spinner} {prefix}: {msg} [{bar:30}] {bytes}/{total_bytes} [{elapsed}]",
                                    )
                                    .expect("a valid template")
                                    .progress_chars("=> "),
                                );
                                bar.set_length(*total);
                            }
                            bar.set_position(*done);
                        }
                    }
                    // The spinner shows the elapsed time already.
                    Event::StillRunning { .. } | Event::Outcome { .. } => {}
                    Event::Finished { address, .. }
                    | Event::Failed { address, .. }
                    | Event::Skipped { address, .. } => {
                        if let Some(bar) = running.remove(address) {
                            bar.finish_and_clear();
                            bars.remove(&bar);
                        }
                        if let Some(line) = line(event, style) {
                            let _ = bars.println(line);
                        }
                    }
                }
            }
        }
    }

    /// Clears what is left on the terminal (nothing, after a normal end).
    pub fn finish(&self) {
        if let ApplyProgress::Live { bars, .. } = self {
            let _ = bars.clear();
        }
    }
}

/// The line form of an event.
fn line(event: &Event, style: &Style) -> Option<String> {
    Some(match event {
        Event::Started { address, action } => format!("{address}: {}...", verb(*action).0),
        Event::Progress { address, message } => format!("{address}: {message}"),
        Event::StillRunning { address, action, elapsed } => {
            format!("{address}: Still {}... [{}s elapsed]", verb(*action).0.to_lowercase(), elapsed.as_secs())
        }
        Event::Finished { address, action, elapsed } => {
            format!("{address}: {} complete after {}s", verb(*action).1, elapsed.as_secs())
        }
        Event::Failed { address, action, error } => {
            style.red(&format!("{address}: {} failed: {error}", verb(*action).1))
        }
        Event::Skipped { address, because, .. } => style.red(&format!("{address}: skipped, because {because} failed")),
        // A byte count per file would flood a log; the line form reports the totals at the end.
        Event::Outcome { .. } | Event::Transfer { .. } => return None,
    })
}
