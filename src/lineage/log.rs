//! Reading history: one apply as an `Entry`, from a commit or built from what an apply holds,
//! and the log of a stack or of one resource through the index.

use std::collections::BTreeMap;

use gix::bstr::ByteSlice;
use mlops_provider_core::{Address, Attributes};
use serde::{Deserialize, Serialize};

use super::{Lineage, LineageError, Needle, Record, ResourceRecord, git, record_path};
use crate::plan::{Action, Outcomes};

/// One apply, as `mlops log` shows it (and as the index keeps it: the first four fields lead
/// each index line, so a scan reads them without parsing the rest).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub commit: String,
    /// The previous lineage commit; `None` for the first apply.
    pub parent: Option<String>,
    /// RFC 3339, UTC.
    pub time: String,
    /// The same time in Unix seconds.
    pub seconds: i64,
    pub applied_by: String,
    pub summary: String,
    pub trailers: BTreeMap<String, String>,
    /// address → (action, status)
    pub changes: Vec<EntryChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryChange {
    pub address: String,
    pub action: Action,
    pub status: crate::plan::OutcomeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failure, its kind (`unavailable`, `invalid`, `conflict`, `timeout`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<mlops_provider_core::ErrorKind>,
    /// The resource's outputs after this apply (versions, digests); absent for a delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Attributes>,
}

impl Lineage {
    pub fn entry(&self, id: gix::ObjectId) -> Result<Entry, LineageError> {
        let commit = self.repo.find_commit(id).map_err(git)?;
        let message = commit.message_raw().map_err(git)?.to_str_lossy().into_owned();
        let summary = message.lines().next().unwrap_or_default().to_string();
        let trailers = parse_trailers(&message);
        let author = commit.author().map_err(git)?;
        let time = author.time().map_err(git)?;
        let applied_by = format!("{} <{}>", author.name.to_str_lossy(), author.email.to_str_lossy());
        let tree = commit.tree().map_err(git)?;
        let outcomes: Outcomes = match self.blob_at(&tree, "result.json")? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| LineageError::Corrupt(id.to_string(), e.to_string()))?,
            None => Outcomes::new(),
        };
        // Only the records of what this apply changed: an entry costs what the apply did, not
        // what the stack holds.
        let mut changes = Vec::with_capacity(outcomes.len());
        for (address, o) in outcomes {
            let outputs = match (o.action, address.parse::<Address>()) {
                (Action::Delete, _) | (_, Err(_)) => None,
                (_, Ok(a)) => match self.blob_at(&tree, &record_path(&a))? {
                    Some(b) => Some(
                        serde_json::from_slice::<ResourceRecord>(&b)
                            .map_err(|e| LineageError::Corrupt(id.to_string(), format!("{address}: {e}")))?
                            .outputs,
                    ),
                    None => None,
                },
            };
            changes.push(EntryChange {
                outputs,
                address,
                action: o.action,
                status: o.status,
                error: o.error,
                error_kind: o.kind,
            });
        }
        let when = chrono::DateTime::from_timestamp(time.seconds, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
        let parent = commit.parent_ids().next().map(|p| p.to_string());
        Ok(Entry {
            commit: id.to_string(),
            parent,
            time: when,
            seconds: time.seconds,
            applied_by,
            summary,
            trailers,
            changes,
        })
    }
}

impl Lineage {
    /// Newest first, following first parents from the tip.
    pub fn log(&self, limit: Option<usize>) -> Result<Vec<Entry>, LineageError> {
        Ok(self.log_to_end(limit)?.0)
    }

    /// The history, newest first, and the commit it ends at when its parent is not in this
    /// repository (a shallow fetch of the lineage ref): readable as far as it goes.
    pub fn log_to_end(&self, limit: Option<usize>) -> Result<(Vec<Entry>, Option<String>), LineageError> {
        self.log_of(None, limit)
    }

    /// Like [`Lineage::log_to_end`], only the applies that touched `address` (each entry cut down
    /// to it); read from the index, newest first, stopping once `limit` entries are found.
    pub fn log_of(
        &self,
        address: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<Entry>, Option<String>), LineageError> {
        let index = self.index()?;
        let needle = address.map(Needle::new);
        let mut out = Vec::new();
        for i in (0..index.len()).rev() {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            if needle.as_ref().is_some_and(|n| !index.mentions(i, n)) {
                continue;
            }
            let mut entry = index.entry(i)?;
            if let Some(a) = address {
                entry.changes.retain(|c| c.address == a);
                if entry.changes.is_empty() {
                    continue;
                }
            }
            out.push(entry);
        }
        Ok((out, index.shallow_end))
    }
}

/// The trailers of a commit message (its last paragraph's `Token: value` lines), as gix parses them.
pub fn parse_trailers(message: &str) -> BTreeMap<String, String> {
    use gix::bstr::ByteSlice;
    let message = gix::objs::commit::MessageRef::from_bytes(message.as_bytes());
    message
        .body()
        .map(|body| {
            body.trailers()
                .map(|t| (t.token.to_str_lossy().into_owned(), t.value.to_str_lossy().trim().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The [`Entry`] of a commit just written from `rec`: what [`Lineage::entry`] reads back from it.
pub(super) fn entry_of(id: &gix::ObjectId, commit: &gix::objs::Commit, rec: &Record<'_>) -> Entry {
    let message = commit.message.to_str_lossy();
    let seconds = commit.author.time.seconds;
    let changes = rec
        .outcomes
        .iter()
        .map(|(address, o)| {
            let outputs = match (o.action, address.parse::<Address>()) {
                (Action::Delete, _) | (_, Err(_)) => None,
                (_, Ok(a)) => rec.resources.get(&a).map(|r| r.outputs.clone()),
            };
            EntryChange {
                outputs,
                address: address.clone(),
                action: o.action,
                status: o.status,
                error: o.error.clone(),
                error_kind: o.kind,
            }
        })
        .collect();
    Entry {
        commit: id.to_string(),
        parent: commit.parents.first().map(|p| p.to_string()),
        time: chrono::DateTime::from_timestamp(seconds, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
        seconds,
        applied_by: format!("{} <{}>", commit.author.name.to_str_lossy(), commit.author.email.to_str_lossy()),
        summary: message.lines().next().unwrap_or_default().to_string(),
        trailers: parse_trailers(&message),
        changes,
    }
}
