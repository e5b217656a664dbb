//! The apply journal: written as an apply goes, recorded by the next run if the apply was killed.

use std::path::PathBuf;

use mlops_provider_core::Address;
use serde::{Deserialize, Serialize};

use super::{Lineage, LineageError, Record, ResourceRecord, git, io};
use crate::plan::{Outcomes, Plan, PlanDocument};

impl Lineage {
    /// The journal of this stack's applies, kept inside the Git directory (never committed).
    pub fn journal(&self) -> Journal {
        let rel = self.ref_name.trim_start_matches("refs/mlops/lineage/");
        Journal { path: self.repo.common_dir().join("mlops").join("journal").join(format!("{rel}.jsonl")) }
    }
}

/// Written as an apply goes, so that an apply killed before it records loses nothing: the
/// next run records what the journal says was applied, then removes it.
pub struct Journal {
    path: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JournalEntry {
    pub address: Address,
    pub outcome: crate::plan::Outcome,
    /// The state after the change; `None` for a delete.
    pub record: Option<ResourceRecord>,
}

impl Journal {
    fn plan_path(&self) -> PathBuf {
        self.path.with_extension("plan.json")
    }

    pub fn begin(&self, plan: &PlanDocument<'_>) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(self.plan_path(), &plan.json)?;
        std::fs::write(&self.path, b"")
    }

    pub fn append(&self, entry: &JournalEntry) -> std::io::Result<()> {
        self.append_all(std::slice::from_ref(entry))
    }

    /// Appends `entries` with one write and one `fdatasync`.
    fn append_all(&self, entries: &[JournalEntry]) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path)?;
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).expect("entries serialize"));
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }

    /// A writer that group-commits: entries sent while the previous batch is being synced are
    /// written together, with one `fdatasync` per batch instead of one per change. An entry is
    /// durable once its batch is synced; a kill before that loses only changes whose outcome
    /// was not yet durable, which the next plan sees from the live state, as a kill between a
    /// change and its entry always did.
    pub fn writer(&self) -> JournalWriter {
        let (tx, rx) = std::sync::mpsc::channel::<JournalEntry>();
        let journal = Journal { path: self.path.clone() };
        let thread = std::thread::spawn(move || {
            let mut first_error = None;
            while let Ok(entry) = rx.recv() {
                let mut batch = vec![entry];
                batch.extend(rx.try_iter());
                if let Err(e) = journal.append_all(&batch) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        JournalWriter { tx: Some(tx), thread: Some(thread) }
    }

    pub fn finish(&self) -> std::io::Result<()> {
        for p in [self.path.clone(), self.plan_path()] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves an unreadable journal aside (`….corrupt-<unix time>`), for a person to look at.
    pub fn move_aside(&self) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside = self.path.with_extension(format!("corrupt-{stamp}"));
        std::fs::create_dir_all(&aside)?;
        for p in [self.plan_path(), self.path.clone()] {
            if p.exists() {
                std::fs::rename(&p, aside.join(p.file_name().unwrap_or_default()))?;
            }
        }
        Ok(aside)
    }

    /// True when an apply began and has not finished (or died): its record is still to be made.
    /// Entries without their plan file are never written by an apply (the plan comes first and
    /// goes last): such a journal is pending too, to be moved aside and said so, never dropped.
    pub fn is_pending(&self) -> bool {
        self.plan_path().exists() || std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0)
    }

    /// The plan and entries of an apply that did not finish, if any.
    /// The journal's plan (and the bytes it was written as) and its entries.
    pub fn pending(&self) -> Option<(Plan, Vec<u8>, Vec<JournalEntry>)> {
        let json = std::fs::read(self.plan_path()).ok()?;
        let plan: Plan = serde_json::from_slice(&json).ok()?;
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        // A torn last line (killed mid-write) is dropped: that change is re-planned from live state.
        let entries = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Some((plan, json, entries))
    }
}

/// The sending end of [`Journal::writer`]; [`JournalWriter::close`] waits for every entry sent.
pub struct JournalWriter {
    tx: Option<std::sync::mpsc::Sender<JournalEntry>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl JournalWriter {
    pub fn send(&self, entry: JournalEntry) -> std::io::Result<()> {
        let closed = || std::io::Error::other("the journal writer has stopped");
        self.tx.as_ref().ok_or_else(closed)?.send(entry).map_err(|_| closed())
    }

    /// Writes and syncs what was sent; the first write error, if any.
    pub fn close(mut self) -> std::io::Result<()> {
        self.tx = None;
        let thread = self.thread.take().expect("closed once");
        thread.join().unwrap_or_else(|_| Err(std::io::Error::other("the journal writer panicked")))
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What recovering an interrupted apply's journal did.
pub enum Recovery {
    Nothing,
    /// Recorded as this lineage commit (`Result: interrupted`).
    Recorded(String),
    /// The journal could not be read; moved to this folder.
    MovedAside(PathBuf),
}

impl Lineage {
    /// Records what a killed apply left in the journal. Returns the new lineage commit, if any.
    /// A journal whose plan cannot be read is moved aside (and said so), never ignored forever.
    pub fn recover(&self) -> Result<Recovery, LineageError> {
        // A journal is only abandoned when nobody else holds the lock: a running apply's is live.
        if self.lock_holder().is_some_and(|h| h.pid != std::process::id()) {
            return Ok(Recovery::Nothing);
        }
        let journal = self.journal();
        let Some((plan, json, entries)) = journal.pending() else {
            if journal.is_pending() {
                return Ok(Recovery::MovedAside(
                    journal.move_aside().map_err(io("move the unreadable apply journal aside"))?,
                ));
            }
            return Ok(Recovery::Nothing);
        };
        let plan = PlanDocument::new(&plan, json);
        let state = self.state()?;
        // Killed after recording but before removing the journal: it is in lineage already.
        let recorded = match &state.tip {
            Some(tip) => {
                self.entry(gix::ObjectId::from_hex(tip.as_bytes()).map_err(git)?)?.trailers.get("Plan-Digest")
                    == Some(&plan.digest)
            }
            None => false,
        };
        if entries.is_empty() || recorded {
            journal.finish().map_err(io("remove the recorded apply journal"))?;
            return Ok(Recovery::Nothing);
        }
        let mut resources = state.resources.clone();
        let mut outcomes = Outcomes::new();
        for e in entries {
            match &e.record {
                Some(r) => {
                    resources.insert(e.address.clone(), r.clone());
                }
                None if e.outcome.status == crate::plan::OutcomeStatus::Applied => {
                    resources.remove(&e.address);
                }
                None => {}
            }
            outcomes.insert(e.address.to_string(), e.outcome);
        }
        let id = self.record(
            state.tip.as_deref(),
            Record { partial: true, interrupted: true, ..Record::new(&plan, &outcomes, &resources, &state) },
        )?;
        journal.finish().map_err(io("remove the recorded apply journal"))?;
        Ok(Recovery::Recorded(id))
    }
}
