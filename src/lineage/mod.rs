//! Lineage in Git: one commit per apply on `refs/mlops/lineage/<project>/<environment>`.
//!
//! The tip's tree is the state: `resources/<kind>/<name>.json` per managed resource, plus the
//! applied `plan.json` and the per-resource `result.json`. The ref moves by compare-and-swap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use gix::refs::transaction::PreviousValue;
use mlops_provider_core::{Address, Attributes, Kind, Value};
use serde::{Deserialize, Serialize};

use crate::plan::{Action, Outcomes, Plan};

mod index;
pub use index::{Index, Needle};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LineageError {
    #[error("{0} is not inside a Git repository")]
    #[diagnostic(
        code(lineage::no_repository),
        help("mlops records every apply in Git: run `git init` (or `mlops init`) first")
    )]
    NoRepository(String),
    #[error("Git: {0}")]
    #[diagnostic(code(lineage::git))]
    Git(String),
    /// A file mlops keeps in the Git directory (journal, index) could not be written or moved.
    #[error("cannot {what}")]
    #[diagnostic(code(lineage::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the lineage ref {ref_name} moved while this apply ran (expected {expected}, found {found})")]
    #[diagnostic(code(lineage::conflict), help("another apply ran at the same time; run `mlops plan` again"))]
    Conflict { ref_name: String, expected: String, found: String },
    #[error("{0}")]
    #[diagnostic(code(lineage::not_found))]
    NotFound(String),
    #[error("{ref_name} is held by {} on {} (pid {}) since {}, for {}", .holder.who, .holder.host, .holder.pid, .holder.since, .holder.operation)]
    #[diagnostic(
        code(lineage::locked),
        help("another apply of this stack is running; wait for it. If that process is dead: `mlops unlock --force`")
    )]
    Locked { ref_name: String, holder: Box<LockHolder> },
    #[error("Git's lock file {} exists: a Git process that crashed left it, and no ref update of this stack can succeed while it does", .0.display())]
    #[diagnostic(
        code(lineage::git_lock_file),
        help("if no Git command or mlops apply is running in this repository, remove it with `mlops unlock --force`")
    )]
    GitLockFile(PathBuf),
    #[error("the lock {ref_name} points at {what}")]
    #[diagnostic(
        code(lineage::broken_lock),
        help("no apply can hold it; if no apply of this stack is running, remove it with `mlops unlock --force`")
    )]
    BrokenLock { ref_name: String, what: String },
    #[error("cannot sign the lineage commit: {0}")]
    #[diagnostic(
        code(lineage::signing),
        help(
            "`apply --sign` signs as `git commit -S` does: set `user.signingkey` (and `gpg.format ssh` for an SSH key) in your Git config"
        )
    )]
    Signing(String),
    #[error("lineage record {0} is corrupt: {1}")]
    #[diagnostic(code(lineage::corrupt))]
    Corrupt(String, String),
}

fn git(e: impl std::fmt::Display) -> LineageError {
    LineageError::Git(e.to_string())
}

/// An I/O error on a file in the Git directory, saying what was being done to which file.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LineageError {
    let what = what.into();
    move |source| LineageError::Io { what, source }
}

/// What lineage remembers of one managed resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub address: Address,
    pub provider: String,
    /// Shared between the records of one provider block (it is the same value for all of them).
    #[serde(default)]
    pub provider_config: std::sync::Arc<Value>,
    /// The attributes as applied (read back from the backend right after the apply).
    pub attributes: Attributes,
    /// Identifiers, versions, digests.
    #[serde(default)]
    pub outputs: Attributes,
    #[serde(default)]
    pub depends_on: Vec<Address>,
    /// The lineage edges with the versions they had at apply time, e.g. a model's datasets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

/// The state at the lineage tip.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub tip: Option<String>,
    pub resources: BTreeMap<Address, ResourceRecord>,
}

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

pub struct Lineage {
    repo: gix::Repository,
    pub ref_name: String,
    /// The key of the index's line checks, read when the index is first used.
    index_key: std::sync::OnceLock<Vec<u8>>,
}

pub fn ref_name(project: &str, environment: &str) -> String {
    format!("refs/mlops/lineage/{project}/{environment}")
}

fn record_path(a: &Address) -> String {
    format!("resources/{}/{}.json", a.kind.section(), a.name)
}

/// What to write in one lineage commit.
pub struct Record<'a> {
    pub plan: &'a Plan,
    pub outcomes: &'a Outcomes,
    pub resources: &'a BTreeMap<Address, ResourceRecord>,
    pub partial: bool,
    /// Recovered from the journal of an apply that was killed before it could record.
    pub interrupted: bool,
    /// More trailers: the CI run and pull request ([`ci_context`]), the policy verdict.
    pub context: Vec<(String, String)>,
    /// When it happened, Unix seconds; `None`: now (or `MLOPS_NOW`).
    pub time: Option<i64>,
    /// Signed with the user's Git signing configuration (`git commit-tree -S`).
    pub sign: bool,
}

impl<'a> Record<'a> {
    /// A complete apply, now, with no more trailers: change what differs with struct update.
    pub fn new(plan: &'a Plan, outcomes: &'a Outcomes, resources: &'a BTreeMap<Address, ResourceRecord>) -> Self {
        Record {
            plan,
            outcomes,
            resources,
            partial: false,
            interrupted: false,
            context: vec![],
            time: None,
            sign: false,
        }
    }
}

/// What the CI that runs this apply says about it, as commit trailers: `CI-Run` (a URL),
/// `Pull-Request`, `Approved-By`. GitHub Actions and GitLab CI are read from their environment
/// variables; `MLOPS_CI_RUN`, `MLOPS_PULL_REQUEST` and `MLOPS_APPROVED_BY` set or override them
/// (e.g. an approver's name a workflow looked up).
pub fn ci_context(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let (mut run, mut pr, mut approved) = (None, None, None);
    if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        if let (Some(server), Some(repo), Some(id)) =
            (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID"))
        {
            run = Some(format!("{server}/{repo}/actions/runs/{id}"));
        }
        // `refs/pull/N/merge` on pull_request events; the event payload otherwise.
        pr = var("GITHUB_REF")
            .and_then(|r| r.strip_prefix("refs/pull/").and_then(|r| r.split('/').next()).map(|n| format!("#{n}")));
        let event: Option<Value> =
            var("GITHUB_EVENT_PATH").and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(event) = &event {
            if pr.is_none() {
                pr = event.pointer("/pull_request/number").and_then(Value::as_u64).map(|n| format!("#{n}"));
            }
            if event.pointer("/review/state").and_then(Value::as_str) == Some("approved") {
                approved = event.pointer("/review/user/login").and_then(Value::as_str).map(str::to_string);
            }
            // A merge commit pushed to the main branch names its pull request.
            if pr.is_none() {
                let message = event.pointer("/head_commit/message").and_then(Value::as_str).unwrap_or_default();
                pr = message
                    .strip_prefix("Merge pull request #")
                    .and_then(|r| r.split_whitespace().next())
                    .map(|n| format!("#{n}"));
            }
        }
    } else if var("GITLAB_CI").as_deref() == Some("true") {
        run = var("CI_PIPELINE_URL").or_else(|| var("CI_JOB_URL"));
        pr = var("CI_MERGE_REQUEST_IID").map(|n| format!("!{n}"));
        if var("CI_MERGE_REQUEST_APPROVED").as_deref() == Some("true") {
            approved = Some("approved (GitLab does not name the approvers to jobs)".into());
        }
    }
    run = var("MLOPS_CI_RUN").or(run);
    pr = var("MLOPS_PULL_REQUEST").or(pr);
    approved = var("MLOPS_APPROVED_BY").or(approved);
    let one_line = |s: String| s.replace(['\n', '\r'], " ").trim().to_string();
    [("CI-Run", run), ("Pull-Request", pr), ("Approved-By", approved)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), one_line(v))))
        .collect()
}

impl Lineage {
    /// Opens the repository containing `dir`.
    pub fn open(dir: &Path, project: &str, environment: &str) -> Result<Self, LineageError> {
        let repo = gix::discover_with_environment_overrides(dir)
            .map_err(|_| LineageError::NoRepository(dir.display().to_string()))?;
        Ok(Lineage { repo, ref_name: ref_name(project, environment), index_key: Default::default() })
    }

    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// The journal of this stack's applies, kept inside the Git directory (never committed).
    pub fn journal(&self) -> Journal {
        let rel = self.ref_name.trim_start_matches("refs/mlops/lineage/");
        Journal { path: self.repo.common_dir().join("mlops").join("journal").join(format!("{rel}.jsonl")) }
    }

    pub fn tip(&self) -> Result<Option<gix::ObjectId>, LineageError> {
        let r = self.repo.try_find_reference(self.ref_name.as_str()).map_err(git)?;
        match r {
            None => Ok(None),
            Some(mut r) => Ok(Some(r.peel_to_id().map_err(git)?.detach())),
        }
    }

    /// The resources recorded at the tip (empty before the first apply).
    pub fn state(&self) -> Result<State, LineageError> {
        let Some(tip) = self.tip()? else { return Ok(State::default()) };
        Ok(State { tip: Some(tip.to_string()), resources: self.resources_at(tip)? })
    }

    fn tree_of(&self, commit: gix::ObjectId) -> Result<gix::Tree<'_>, LineageError> {
        self.repo.find_commit(commit).map_err(git)?.tree().map_err(git)
    }

    fn blob_at(&self, tree: &gix::Tree<'_>, path: &str) -> Result<Option<Vec<u8>>, LineageError> {
        let entry = tree.lookup_entry_by_path(path).map_err(git)?;
        match entry {
            None => Ok(None),
            Some(e) => Ok(Some(self.repo.find_blob(e.object_id()).map_err(git)?.data.clone())),
        }
    }

    pub fn resources_at(&self, commit: gix::ObjectId) -> Result<BTreeMap<Address, ResourceRecord>, LineageError> {
        let tree = self.tree_of(commit)?;
        let mut out = BTreeMap::new();
        // Every record of a provider holds the same block: one copy, shared.
        let mut blocks: Vec<std::sync::Arc<Value>> = Vec::new();
        for kind in Kind::ALL {
            let Some(entry) = tree.lookup_entry_by_path(format!("resources/{}", kind.section())).map_err(git)? else {
                continue;
            };
            let sub = self.repo.find_tree(entry.object_id()).map_err(git)?;
            for e in sub.decode().map_err(git)?.entries.iter() {
                let blob = self.repo.find_blob(e.oid.to_owned()).map_err(git)?;
                let mut rec: ResourceRecord = serde_json::from_slice(&blob.data)
                    .map_err(|err| LineageError::Corrupt(commit.to_string(), format!("{}: {err}", e.filename)))?;
                match blocks.iter().find(|b| **b == rec.provider_config) {
                    Some(b) => rec.provider_config = b.clone(),
                    None => blocks.push(rec.provider_config.clone()),
                }
                out.insert(rec.address.clone(), rec);
            }
        }
        Ok(out)
    }

    /// Writes one commit on the lineage ref; fails if the ref moved since `expected_tip`.
    pub fn record(&self, expected_tip: Option<&str>, rec: Record<'_>) -> Result<String, LineageError> {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (a, r) in rec.resources {
            let mut s = serde_json::to_string_pretty(r).expect("records serialize");
            s.push('\n');
            files.insert(record_path(a), s.into_bytes());
        }
        files.insert("plan.json".into(), rec.plan.to_json().into_bytes());
        let mut outcomes = serde_json::to_string_pretty(rec.outcomes).expect("outcomes serialize");
        outcomes.push('\n');
        files.insert("result.json".into(), outcomes.into_bytes());
        let tree = self.write_tree(&files)?;

        let message = commit_message(&rec, &self.applied_by());
        let mut sig = self.signature();
        if let Some(t) = rec.time {
            sig.time = gix::date::Time::new(t, 0);
        }
        let parents: Vec<gix::ObjectId> = match expected_tip {
            Some(t) => vec![gix::ObjectId::from_hex(t.as_bytes()).map_err(git)?],
            None => vec![],
        };
        let commit = gix::objs::Commit {
            tree,
            parents: parents.clone().into(),
            author: sig.clone(),
            committer: sig,
            encoding: None,
            message: message.into(),
            extra_headers: vec![],
        };
        let id = if rec.sign {
            self.commit_signed(&commit)?
        } else {
            self.repo.write_object(&commit).map_err(git)?.detach()
        };
        let constraint = match parents.first() {
            Some(p) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(*p)),
            None => PreviousValue::MustNotExist,
        };
        if let Err(e) = self.repo.reference(self.ref_name.as_str(), id, constraint, "mlops apply") {
            let found = self.tip().ok().flatten().map(|t| t.to_string()).unwrap_or_else(|| "nothing".into());
            if found != expected_tip.unwrap_or("nothing") {
                return Err(LineageError::Conflict {
                    ref_name: self.ref_name.clone(),
                    expected: expected_tip.unwrap_or("nothing").to_string(),
                    found,
                });
            }
            return Err(git(e));
        }
        // The index is a cache: when it cannot be written, the next read rebuilds it. Its line is
        // built from what this apply holds in memory, never read back from the commit.
        let entry = entry_of(&id, &commit, &rec);
        let _ = self.index_append(expected_tip, &entry);
        Ok(id.to_string())
    }

    fn write_tree(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<gix::ObjectId, LineageError> {
        // Group by first path component, recursively.
        let mut blobs: Vec<(String, gix::ObjectId)> = Vec::new();
        let mut dirs: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for (path, data) in files {
            match path.split_once('/') {
                Some((dir, rest)) => {
                    dirs.entry(dir.to_string()).or_default().insert(rest.to_string(), data.clone());
                }
                None => blobs.push((path.clone(), self.write_blob_once(data)?)),
            }
        }
        let mut entries: Vec<(String, gix::objs::tree::EntryMode, gix::ObjectId)> = Vec::new();
        for (name, oid) in blobs {
            entries.push((name, gix::objs::tree::EntryKind::Blob.into(), oid));
        }
        for (name, sub) in dirs {
            entries.push((name, gix::objs::tree::EntryKind::Tree.into(), self.write_tree(&sub)?));
        }
        // Git orders tree entries as if directory names ended in '/'.
        entries.sort_by(|a, b| {
            let key = |e: &(String, gix::objs::tree::EntryMode, gix::ObjectId)| {
                let mut k = e.0.clone().into_bytes();
                if e.1.is_tree() {
                    k.push(b'/');
                }
                k
            };
            key(a).cmp(&key(b))
        });
        let tree = gix::objs::Tree {
            entries: entries
                .into_iter()
                .map(|(name, mode, oid)| gix::objs::tree::Entry { mode, filename: name.into(), oid })
                .collect(),
        };
        Ok(self.repo.write_object(&tree).map_err(git)?.detach())
    }

    /// Most records of an apply are unchanged since the last one: their blobs exist already and
    /// are not written again (a loose object write is a file create, a deflate and a rename).
    fn write_blob_once(&self, data: &[u8]) -> Result<gix::ObjectId, LineageError> {
        let id = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, data).map_err(git)?;
        if self.repo.has_object(id) {
            return Ok(id);
        }
        Ok(self.repo.write_blob(data).map_err(git)?.detach())
    }

    fn signature(&self) -> gix::actor::Signature {
        let time = match std::env::var("MLOPS_NOW").ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(secs) => gix::date::Time::new(secs, 0),
            None => gix::date::Time::now_local_or_utc(),
        };
        let (name, email) = self.identity();
        gix::actor::Signature { name: name.into(), email: email.into(), time }
    }

    fn identity(&self) -> (String, String) {
        if let Some(Ok(sig)) = self.repo.committer() {
            return (sig.name.to_str_lossy().into_owned(), sig.email.to_str_lossy().into_owned());
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "mlops".into());
        (user.clone(), format!("{user}@localhost"))
    }

    pub fn applied_by(&self) -> String {
        let (n, e) = self.identity();
        format!("{n} <{e}>")
    }

    /// HEAD's commit id, if the repository has one.
    pub fn source_commit(&self) -> Option<String> {
        self.repo.head_id().ok().map(|id| id.to_string())
    }

    /// True if any of `paths` (files or folders) differs from HEAD, or is not tracked.
    /// One walk of HEAD's tree, entering only the folders that hold inputs; each file hashed once.
    pub fn is_dirty(&self, paths: &[PathBuf]) -> bool {
        let Some(workdir) = self.repo.workdir().and_then(|w| w.canonicalize().ok()) else { return false };
        let mut inputs: BTreeMap<String, PathBuf> = BTreeMap::new();
        // Inputs share a few folders: resolve each folder once, not every input path in full.
        let mut folders: BTreeMap<&Path, Option<PathBuf>> = BTreeMap::new();
        for path in paths {
            let abs = match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => {
                    let folder = folders.entry(parent).or_insert_with(|| parent.canonicalize().ok());
                    folder.as_ref().map(|f| f.join(name)).filter(|p| p.symlink_metadata().is_ok())
                }
                _ => path.canonicalize().ok(),
            };
            let Some(abs) = abs else { return true };
            let Ok(rel) = abs.strip_prefix(&workdir) else { continue };
            inputs.insert(rel.to_string_lossy().replace('\\', "/"), abs);
        }
        if inputs.is_empty() {
            return false;
        }
        let Some(head_tree) = self.repo.head_commit().ok().and_then(|c| c.tree_id().ok()) else { return true };
        let wanted: BTreeSet<&str> = inputs.keys().map(String::as_str).collect();
        let mut committed = BTreeMap::new();
        if self.committed_blobs(head_tree.detach(), "", &wanted, &mut committed).is_err() {
            return true;
        }
        let mut seen = BTreeSet::new();
        for (rel, abs) in &inputs {
            if self.differs(abs, rel, &committed, &mut seen) {
                return true;
            }
        }
        // A committed file that is gone from an input folder.
        committed.keys().any(|p| !seen.contains(p))
    }

    /// The blobs of `tree` (at `prefix`) that are inputs or lie inside input folders, by path.
    fn committed_blobs(
        &self,
        tree: gix::ObjectId,
        prefix: &str,
        wanted: &BTreeSet<&str>,
        out: &mut BTreeMap<String, gix::ObjectId>,
    ) -> Result<(), LineageError> {
        let inside = |path: &str| {
            wanted.contains("")
                || path.match_indices('/').map(|(i, _)| &path[..i]).chain([path]).any(|p| wanted.contains(p))
        };
        let holds_input = |path: &str| {
            let dir = format!("{path}/");
            wanted.range(dir.as_str()..).next().is_some_and(|w| w.starts_with(&dir))
        };
        let tree = self.repo.find_tree(tree).map_err(git)?;
        for e in tree.decode().map_err(git)?.entries.iter() {
            let name = e.filename.to_str_lossy();
            let path = if prefix.is_empty() { name.into_owned() } else { format!("{prefix}/{name}") };
            if e.mode.is_tree() {
                if inside(&path) || holds_input(&path) {
                    self.committed_blobs(e.oid.to_owned(), &path, wanted, out)?;
                }
            } else if inside(&path) {
                out.insert(path, e.oid.to_owned());
            }
        }
        Ok(())
    }

    /// True if the file or folder `abs` (`rel` in the work tree) holds anything not committed as is.
    fn differs(
        &self,
        abs: &Path,
        rel: &str,
        committed: &BTreeMap<String, gix::ObjectId>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        if abs.is_file() {
            if !seen.insert(rel.to_string()) {
                return false;
            }
            let Some(want) = committed.get(rel) else { return true };
            let Ok(data) = std::fs::read(abs) else { return true };
            let hash = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, &data);
            return hash.map(|h| h != *want).unwrap_or(true);
        }
        let Ok(read) = std::fs::read_dir(abs) else { return true };
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" {
                continue;
            }
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if self.differs(&entry.path(), &child, committed, seen) {
                return true;
            }
        }
        false
    }

    /// Resolves `REV`: a commit id (or prefix), `lineage`, `lineage~N`, or any Git revision.
    pub fn resolve(&self, rev: &str) -> Result<gix::ObjectId, LineageError> {
        let spec = match rev.strip_prefix("lineage") {
            Some(rest) if rest.is_empty() || rest.starts_with('~') || rest.starts_with('^') => {
                format!("{}{rest}", self.ref_name)
            }
            _ => rev.to_string(),
        };
        self.repo
            .rev_parse_single(spec.as_str())
            .map(|id| id.detach())
            .map_err(|_| LineageError::NotFound(format!("`{rev}` is neither a plan file nor a lineage revision")))
    }

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

    /// The lineage tip on a Git remote (`git ls-remote`), if it has the ref.
    pub fn remote_tip(&self, remote: &str) -> Result<Option<String>, LineageError> {
        let out = git_cli(self.repo.common_dir(), &["ls-remote", remote, &self.ref_name]).map_err(LineageError::Git)?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }

    /// A commit's parents, as recorded.
    pub fn parents(&self, id: gix::ObjectId) -> Result<Vec<gix::ObjectId>, LineageError> {
        Ok(self.repo.find_commit(id).map_err(git)?.parent_ids().map(|p| p.detach()).collect())
    }

    /// The `sha256:` digest of the file at `path` in commit `commit`: `None` when this repository
    /// has no such commit, `Some(None)` when the commit has no such file.
    pub fn file_digest_at(&self, commit: &str, path: &str) -> Result<Option<Option<String>>, LineageError> {
        use sha2::{Digest, Sha256};
        let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else { return Ok(None) };
        let Ok(commit) = self.repo.find_commit(id) else { return Ok(None) };
        let tree = commit.tree().map_err(git)?;
        Ok(Some(self.blob_at(&tree, path)?.map(|b| format!("sha256:{}", hex::encode(Sha256::digest(&b))))))
    }

    /// Whether this repository has the object (a shallow history lacks the oldest parents).
    pub fn has(&self, id: gix::ObjectId) -> bool {
        self.repo.has_object(id)
    }

    /// The applied plan stored in a lineage commit.
    pub fn plan_at(&self, id: gix::ObjectId) -> Result<Option<Plan>, LineageError> {
        let tree = self.tree_of(id)?;
        match self.blob_at(&tree, "plan.json")? {
            None => Ok(None),
            Some(b) => {
                serde_json::from_slice(&b).map(Some).map_err(|e| LineageError::Corrupt(id.to_string(), e.to_string()))
            }
        }
    }

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
fn entry_of(id: &gix::ObjectId, commit: &gix::objs::Commit, rec: &Record<'_>) -> Entry {
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

fn commit_message(rec: &Record<'_>, applied_by: &str) -> String {
    use crate::plan::OutcomeStatus as S;
    let count = |a: Action| rec.outcomes.values().filter(|o| o.action == a && o.status == S::Applied).count();
    let failed = rec.outcomes.values().filter(|o| o.status != S::Applied).count();
    let mut summary = format!(
        "apply {}/{}: {} created, {} updated, {} replaced, {} deleted",
        rec.plan.project,
        rec.plan.environment,
        count(Action::Create),
        count(Action::Update),
        count(Action::Replace),
        count(Action::Delete)
    );
    if rec.interrupted {
        summary.push_str(" (recovered from an interrupted apply)");
    } else if rec.partial {
        summary.push_str(&format!(" (partial: {failed} not applied)"));
    }
    let mut body = String::new();
    for (addr, o) in rec.outcomes {
        let sym = o.action.symbol();
        match o.status {
            S::Applied => {
                let version = addr
                    .parse::<Address>()
                    .ok()
                    .and_then(|a| rec.resources.get(&a))
                    .and_then(|r| crate::plan::version_text(&r.outputs))
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default();
                body.push_str(&format!("{sym} {addr}{version}\n"));
            }
            S::Failed => {
                let kind = o.kind.map(|k| format!(" ({})", k.name())).unwrap_or_default();
                body.push_str(&format!("! {addr}: failed{kind}: {}\n", o.error.as_deref().unwrap_or("unknown error")))
            }
            S::Skipped => {
                body.push_str(&format!("! {addr}: skipped: {}\n", o.error.as_deref().unwrap_or("a dependency failed")))
            }
        }
    }
    let context: String = rec.context.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    format!(
        "{summary}\n\n{body}\nSource-Commit: {}\nSource-Dirty: {}\nPlan-Digest: {}\nApplied-By: {applied_by}\n{context}Result: {}\n",
        rec.plan.source.commit.as_deref().unwrap_or("none"),
        rec.plan.source.dirty,
        rec.plan.digest(),
        if rec.interrupted {
            "interrupted"
        } else if rec.partial && rolled_back(rec.outcomes) {
            "rolled-back"
        } else if rec.partial {
            "partial"
        } else {
            "success"
        },
    )
}

/// Every failure of an apply was rolled back by its backend (what served before still serves).
pub fn rolled_back(outcomes: &crate::plan::Outcomes) -> bool {
    let failed: Vec<_> = outcomes.values().filter(|o| o.status == crate::plan::OutcomeStatus::Failed).collect();
    !failed.is_empty() && failed.iter().all(|o| o.kind == Some(mlops_provider_core::ErrorKind::RolledBack))
}

/// Who holds a stack's lock, stored as the blob its lock ref points at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
    pub operation: String,
    /// When the holding process started (Linux: clock ticks after boot, /proc/PID/stat), so a
    /// reused pid is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
}

impl LockHolder {
    /// Whether the holder still runs: `Some(false)` only when it held the lock on this host and
    /// its process is gone (or the pid now belongs to a process started later); `None` when this
    /// host cannot tell (another host, or no /proc).
    pub fn alive(&self) -> Option<bool> {
        if self.host != this_host() || !Path::new("/proc/self/stat").exists() {
            return None;
        }
        match process_started(self.pid) {
            None => Some(false),
            Some(started) => Some(self.started.is_none_or(|s| s == started)),
        }
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces), for
/// a process that runs: a zombie (killed, not yet reaped by its parent) holds nothing.
fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Held while an apply runs; released on drop (only if the lock is still ours).
pub struct LockGuard<'a> {
    lineage: &'a Lineage,
    id: gix::ObjectId,
    /// A lock left by a process that died on this host, removed to take this one.
    pub broke: Option<LockHolder>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lineage.delete_lock(Some(self.id));
    }
}

impl Lineage {
    pub fn lock_ref(&self) -> String {
        self.ref_name.replacen("refs/mlops/lineage/", "refs/mlops/lock/", 1)
    }

    fn holder_blob(&self, operation: &str) -> Result<gix::ObjectId, LineageError> {
        let holder = LockHolder {
            who: self.applied_by(),
            host: this_host(),
            pid: std::process::id(),
            since: crate::engine::now_rfc3339(),
            operation: operation.to_string(),
            started: process_started(std::process::id()),
        };
        let blob = serde_json::to_vec_pretty(&holder).expect("holders serialize");
        Ok(self.repo.write_blob(&blob).map_err(git)?.detach())
    }

    /// Git's own `.lock` files for this stack's lineage and lock refs, left by a crashed writer:
    /// while one exists, recording an apply would fail after the apply changed the world.
    pub fn stale_git_locks(&self) -> Vec<PathBuf> {
        let dir = self.repo.common_dir();
        [self.ref_name.clone(), self.lock_ref()]
            .iter()
            .map(|r| dir.join(format!("{r}.lock")))
            // Git holds one for milliseconds while a ref moves (another apply racing for the lock
            // does too): only one that has stayed for seconds was left by a crash.
            .filter(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(5)))
            })
            .collect()
    }

    /// Takes the stack's lock with a compare-and-swap ref creation; fails fast if it is held by a
    /// live process. A lock whose holder died on this host is removed (compare-and-swap on the
    /// dead holder's record) and taken; the guard says whose it was.
    pub fn lock(&self, operation: &str) -> Result<LockGuard<'_>, LineageError> {
        if let Some(path) = self.stale_git_locks().into_iter().next() {
            return Err(LineageError::GitLockFile(path));
        }
        let id = self.holder_blob(operation)?;
        let mut last_error = String::new();
        let mut broke = None;
        // Losing a race can mean the winner's ref is still being written: look again, briefly.
        for _ in 0..20 {
            match self.repo.reference(self.lock_ref().as_str(), id, PreviousValue::MustNotExist, "mlops lock") {
                Ok(_) => return Ok(LockGuard { lineage: self, id, broke }),
                Err(e) => {
                    if let Some(holder) = self.lock_holder() {
                        if holder.alive() == Some(false) && broke.is_none() {
                            if let Some(dead) = self.lock_target() {
                                if self.delete_lock(Some(dead)).is_ok() {
                                    broke = Some(holder);
                                    continue;
                                }
                            }
                        }
                        return Err(LineageError::Locked { ref_name: self.lock_ref(), holder: Box::new(holder) });
                    }
                    if let Some(what) = self.unreadable_lock() {
                        return Err(LineageError::BrokenLock { ref_name: self.lock_ref(), what });
                    }
                    last_error = e.to_string();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(LineageError::Git(format!("cannot take the lock {}: {last_error}", self.lock_ref())))
    }

    /// Who holds the lock, if anyone.
    /// The object the lock ref points at (the holder's record), if locked.
    fn lock_target(&self) -> Option<gix::ObjectId> {
        let mut r = self.repo.try_find_reference(self.lock_ref().as_str()).ok()??;
        Some(r.peel_to_id().ok()?.detach())
    }

    /// The lock ref exists but does not point at a readable holder record (hand-edited, or a
    /// crash mid-write): what it points at, for `unlock --force` to remove.
    pub fn unreadable_lock(&self) -> Option<String> {
        let mut r = self.repo.try_find_reference(self.lock_ref().as_str()).ok()??;
        if self.lock_holder().is_some() {
            return None;
        }
        Some(match r.peel_to_id() {
            Ok(id) => format!("object {id}, which is not a lock record"),
            Err(e) => format!("nothing readable ({e})"),
        })
    }

    pub fn lock_holder(&self) -> Option<LockHolder> {
        let blob = self.repo.find_blob(self.lock_target()?).ok()?;
        serde_json::from_slice(&blob.data).ok()
    }

    /// Removes the lock: ours (`Some(id)`), or whoever's (`None`, for `unlock --force`).
    pub fn delete_lock(&self, expected: Option<gix::ObjectId>) -> Result<(), LineageError> {
        use gix::refs::transaction::{Change, RefEdit, RefLog};
        let expected = match expected {
            Some(id) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(id)),
            None => PreviousValue::MustExist,
        };
        let edit = RefEdit {
            change: Change::Delete { expected, log: RefLog::AndReference },
            name: self.lock_ref().try_into().map_err(git)?,
            deref: false,
        };
        self.repo.edit_reference(edit).map(|_| ()).map_err(git)
    }
}

/// The same lock on a remote, taken with an atomic push with lease (must not exist yet) and
/// released with a push that deletes it only if it is still ours. Uses the `git` command, which
/// has the user's remote configuration and credentials.
pub struct RemoteLockGuard {
    git_dir: PathBuf,
    remote: String,
    lock_ref: String,
    id: String,
}

impl Drop for RemoteLockGuard {
    fn drop(&mut self) {
        let _ = git_cli(
            &self.git_dir,
            &[
                "push",
                "--quiet",
                &format!("--force-with-lease={}:{}", self.lock_ref, self.id),
                &self.remote,
                &format!(":{}", self.lock_ref),
            ],
        );
    }
}

impl Lineage {
    /// Writes `commit` signed by Git itself (`git commit-tree -S`), so the signature is exactly
    /// what `git verify-commit` checks, made with the user's signing configuration (`gpg.format`,
    /// `user.signingkey`, SSH or OpenPGP).
    fn commit_signed(&self, commit: &gix::objs::Commit) -> Result<gix::ObjectId, LineageError> {
        use std::io::Write;
        let date = format!("{} +0000", commit.author.time.seconds);
        let mut cmd = std::process::Command::new("git");
        cmd.arg("--git-dir").arg(self.repo.common_dir()).args(["commit-tree", "-S"]);
        let tree = commit.tree.to_string();
        cmd.arg(&tree);
        for p in &commit.parents {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.args(["-F", "-"])
            .env("GIT_AUTHOR_NAME", commit.author.name.to_string())
            .env("GIT_AUTHOR_EMAIL", commit.author.email.to_string())
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", commit.committer.name.to_string())
            .env("GIT_COMMITTER_EMAIL", commit.committer.email.to_string())
            .env("GIT_COMMITTER_DATE", &date)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let fail = |e: String| LineageError::Signing(e);
        let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run git: {e}")))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(&commit.message)
            .map_err(|e| fail(format!("cannot write to git: {e}")))?;
        let out = child.wait_with_output().map_err(|e| fail(format!("git failed: {e}")))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        gix::ObjectId::from_hex(String::from_utf8_lossy(&out.stdout).trim().as_bytes()).map_err(git)
    }

    /// Whether a lineage commit can be signed here: a signed commit of the empty tree is made
    /// (and left unreferenced) before an apply changes anything.
    pub fn check_signing(&self) -> Result<(), LineageError> {
        let empty = self.repo.write_object(gix::objs::Tree::empty()).map_err(git)?.detach();
        let sig = self.signature();
        let probe = gix::objs::Commit {
            tree: empty,
            parents: Default::default(),
            author: sig.clone(),
            committer: sig,
            encoding: None,
            message: "mlops signing check".into(),
            extra_headers: vec![],
        };
        self.commit_signed(&probe).map(|_| ())
    }

    /// `git verify-commit`: `Err` with Git's reason when the commit is not signed by a key the
    /// repository trusts.
    pub fn verify_signature(&self, commit: &str) -> Result<(), String> {
        git_cli(self.repo.common_dir(), &["verify-commit", commit]).map(|_| ())
    }
}

fn git_cli(git_dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Lineage {
    /// Takes the stack's lock on `remote` too; fails fast, naming the holder, if it is held.
    pub fn lock_remote(&self, remote: &str, operation: &str) -> Result<RemoteLockGuard, LineageError> {
        let id = self.holder_blob(operation)?.to_string();
        let lock_ref = self.lock_ref();
        let git_dir = self.repo.common_dir().to_path_buf();
        let peek = format!("refs/mlops/remote-locks/{remote}/{}", lock_ref.trim_start_matches("refs/mlops/lock/"));
        let mut last_error = String::new();
        // A push that loses a race on the remote may find the winner's ref not yet readable:
        // look again, briefly, before calling it anything but held.
        for _ in 0..20 {
            let pushed = git_cli(
                &git_dir,
                &[
                    "push",
                    "--quiet",
                    "--atomic",
                    &format!("--force-with-lease={lock_ref}:"),
                    remote,
                    &format!("{id}:{lock_ref}"),
                ],
            );
            let push_error = match pushed {
                Ok(_) => return Ok(RemoteLockGuard { git_dir, remote: remote.to_string(), lock_ref, id }),
                Err(e) => e,
            };
            let holder = git_cli(
                &git_dir,
                &["fetch", "--quiet", "--no-write-fetch-head", remote, &format!("+{lock_ref}:{peek}")],
            )
            .ok()
            .and_then(|_| git_cli(&git_dir, &["cat-file", "blob", &peek]).ok())
            .and_then(|b| serde_json::from_str::<LockHolder>(&b).ok());
            if let Some(holder) = holder {
                return Err(LineageError::Locked {
                    ref_name: format!("{remote}:{lock_ref}"),
                    holder: Box::new(holder),
                });
            }
            last_error = push_error;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(LineageError::Git(format!("cannot take the lock on remote `{remote}`: {last_error}")))
    }
}

/// Creates a repository at `dir` (for `mlops init`).
pub fn init_repository(dir: &Path) -> Result<(), LineageError> {
    gix::init(dir).map(|_| ()).map_err(git)
}

pub fn in_repository(dir: &Path) -> bool {
    gix::discover_with_environment_overrides(dir).is_ok()
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

    pub fn begin(&self, plan: &Plan) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(self.plan_path(), plan.to_json())?;
        std::fs::write(&self.path, b"")
    }

    pub fn append(&self, entry: &JournalEntry) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path)?;
        let mut line = serde_json::to_string(entry).expect("entries serialize");
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()
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
    pub fn pending(&self) -> Option<(Plan, Vec<JournalEntry>)> {
        let plan: Plan = serde_json::from_slice(&std::fs::read(self.plan_path()).ok()?).ok()?;
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        // A torn last line (killed mid-write) is dropped: that change is re-planned from live state.
        let entries = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Some((plan, entries))
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
        let Some((plan, entries)) = journal.pending() else {
            if journal.is_pending() {
                return Ok(Recovery::MovedAside(
                    journal.move_aside().map_err(io("move the unreadable apply journal aside"))?,
                ));
            }
            return Ok(Recovery::Nothing);
        };
        let state = self.state()?;
        // Killed after recording but before removing the journal: it is in lineage already.
        let recorded = match &state.tip {
            Some(tip) => {
                self.entry(gix::ObjectId::from_hex(tip.as_bytes()).map_err(git)?)?.trailers.get("Plan-Digest")
                    == Some(&plan.digest())
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
            Record { partial: true, interrupted: true, ..Record::new(&plan, &outcomes, &resources) },
        )?;
        journal.finish().map_err(io("remove the recorded apply journal"))?;
        Ok(Recovery::Recorded(id))
    }
}
