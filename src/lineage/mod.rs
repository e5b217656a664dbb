//! Lineage in Git: one commit per apply on `refs/mlops/lineage/<project>/<environment>`.
//!
//! The tip's tree is the state: `resources/<kind>/<name>.json` per managed resource, plus the
//! applied `plan.json` and the per-resource `result.json`. The ref moves by compare-and-swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use gix::refs::transaction::PreviousValue;
use mlops_provider_core::{Address, Kind, Value};

use crate::plan::{Action, Outcomes, Plan, PlanDocument};

mod index;
mod journal;
mod lock;
mod log;
mod sign;
mod snapshot;
mod source;
mod state;

pub use index::{Index, Needle};
pub use journal::{Journal, JournalEntry, Recovery};
pub use lock::{LockGuard, LockHolder, RemoteLockGuard};
use log::entry_of;
pub use log::{Entry, EntryChange, parse_trailers};
pub use source::ci_context;
pub use state::{Blobs, ResourceRecord, State};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LineageError {
    #[error("{0} is not inside a Git repository")]
    #[diagnostic(
        code(lineage::no_repository),
        help("mlops records every apply in Git: run `git init` (or `mlops init`) first")
    )]
    NoRepository(String),
    /// A Git operation failed: the error gix or git gave, as the cause.
    #[error("a Git operation on the lineage failed")]
    #[diagnostic(code(lineage::git))]
    Git(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    #[error(
        "the lineage {ref_name} here ({local}) and on `{remote}` ({theirs}) have diverged: each has records the other lacks"
    )]
    #[diagnostic(
        code(lineage::diverged),
        help(
            "an apply recorded here was never pushed while another runner recorded on the remote; compare them with `git log {local} {theirs}` and keep one (`git update-ref {ref_name} COMMIT`), then apply again"
        )
    )]
    Diverged { ref_name: String, remote: String, local: String, theirs: String },
    #[error("recorded here as {commit}, but the lineage {ref_name} could not be pushed to `{remote}`: {reason}")]
    #[diagnostic(
        code(lineage::not_pushed),
        help("the next `apply --lock-remote` pushes it; or push it now: `git push {remote} {ref_name}`")
    )]
    NotPushed { ref_name: String, remote: String, commit: String, reason: String },
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

fn git(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LineageError {
    LineageError::Git(e.into())
}

/// An I/O error on a file in the Git directory, saying what was being done to which file.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LineageError {
    let what = what.into();
    move |source| LineageError::Io { what, source }
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
    pub plan: &'a PlanDocument<'a>,
    pub outcomes: &'a Outcomes,
    pub resources: &'a BTreeMap<Address, ResourceRecord>,
    /// The state the apply started from: a record equal to its record there is not serialized
    /// again, its blob is reused by object id.
    pub base: &'a State,
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
    pub fn new(
        plan: &'a PlanDocument<'a>,
        outcomes: &'a Outcomes,
        resources: &'a BTreeMap<Address, ResourceRecord>,
        base: &'a State,
    ) -> Self {
        Record {
            plan,
            outcomes,
            resources,
            base,
            partial: false,
            interrupted: false,
            context: vec![],
            time: None,
            sign: false,
        }
    }
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
        let snapshot = self.snapshot();
        let (resources, blobs, read) = self.read_records(tip, &snapshot)?;
        // Records the snapshot did not hold were read from Git: save them all for the next read.
        if read.iter().any(|(_, bytes)| matches!(bytes, std::borrow::Cow::Owned(_))) {
            self.write_snapshot(read);
        }
        Ok(State { tip: Some(tip.to_string()), resources, blobs })
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
        Ok(self.records_at(commit)?.0)
    }

    /// The records at a commit and the blob each was read from.
    fn records_at(&self, commit: gix::ObjectId) -> Result<(BTreeMap<Address, ResourceRecord>, Blobs), LineageError> {
        let (records, blobs, _) = self.read_records(commit, &self.snapshot())?;
        Ok((records, blobs))
    }

    /// The records at a commit, the blob each was read from, and each blob's bytes: borrowed from
    /// `snapshot` where it holds them (verified), read from Git otherwise.
    #[allow(clippy::type_complexity)]
    fn read_records<'s>(
        &self,
        commit: gix::ObjectId,
        snapshot: &'s snapshot::Snapshot,
    ) -> Result<
        (BTreeMap<Address, ResourceRecord>, Blobs, Vec<(gix::ObjectId, std::borrow::Cow<'s, [u8]>)>),
        LineageError,
    > {
        let tree = self.tree_of(commit)?;
        let mut read = Vec::new();
        let mut out = BTreeMap::new();
        let mut blobs = Blobs::new();
        // Every record of a provider holds the same block: one copy, shared.
        let mut blocks: Vec<std::sync::Arc<Value>> = Vec::new();
        for kind in Kind::ALL {
            let Some(entry) = tree.lookup_entry_by_path(format!("resources/{}", kind.section())).map_err(git)? else {
                continue;
            };
            let sub = self.repo.find_tree(entry.object_id()).map_err(git)?;
            for e in sub.decode().map_err(git)?.entries.iter() {
                let id = e.oid.to_owned();
                let bytes = self.record_bytes(snapshot, id)?;
                let mut rec: ResourceRecord = serde_json::from_slice(&bytes)
                    .map_err(|err| LineageError::Corrupt(commit.to_string(), format!("{}: {err}", e.filename)))?;
                match blocks.iter().find(|b| **b == rec.provider_config) {
                    Some(b) => rec.provider_config = b.clone(),
                    None => blocks.push(rec.provider_config.clone()),
                }
                blobs.insert(rec.address.clone(), id);
                out.insert(rec.address.clone(), rec);
                read.push((id, bytes));
            }
        }
        Ok((out, blobs, read))
    }

    /// Writes one commit on the lineage ref; fails if the ref moved since `expected_tip`.
    pub fn record(&self, expected_tip: Option<&str>, rec: Record<'_>) -> Result<String, LineageError> {
        // A record equal to its base is the base's blob; any other is serialized and hashed once,
        // for its blob and for the snapshot of the new tip.
        let mut changed: BTreeMap<&Address, (gix::ObjectId, Vec<u8>)> = BTreeMap::new();
        for (a, r) in rec.resources {
            if !(rec.base.blobs.contains_key(a) && rec.base.resources.get(a) == Some(r)) {
                let mut s = serde_json::to_string_pretty(r).expect("records serialize");
                s.push('\n');
                let id = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, s.as_bytes())
                    .map_err(git)?;
                changed.insert(a, (id, s.into_bytes()));
            }
        }
        // The new tip's snapshot first (self-verifying: should the commit fail, its entries are
        // blobs no tree names, or the very bytes another writer recorded), so that the records'
        // bytes then move into the tree writer, which frees each once its blob is written.
        self.snapshot_records(&rec, &changed);
        let mut files: BTreeMap<String, File<'_>> = BTreeMap::new();
        for a in rec.resources.keys() {
            let file = match changed.remove(a) {
                Some((id, bytes)) => File::Hashed(id, bytes),
                None => File::Written(rec.base.blobs[a]),
            };
            files.insert(record_path(a), file);
        }
        files.insert("plan.json".into(), File::Borrowed(&rec.plan.json));
        let mut outcomes = serde_json::to_string_pretty(rec.outcomes).expect("outcomes serialize");
        outcomes.push('\n');
        files.insert("result.json".into(), File::Owned(outcomes.into_bytes()));
        let tree = self.write_tree(files)?;

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

    /// Writes the snapshot of a new tip: the base's bytes for the records this apply left as
    /// they were (from the previous snapshot, or from Git where it lacks them), `changed`'s for
    /// the others.
    fn snapshot_records(&self, rec: &Record<'_>, changed: &BTreeMap<&Address, (gix::ObjectId, Vec<u8>)>) {
        let previous = self.snapshot();
        let mut records = Vec::with_capacity(rec.resources.len());
        for a in rec.resources.keys() {
            let entry = match changed.get(a) {
                Some((id, bytes)) => (*id, std::borrow::Cow::Borrowed(bytes.as_slice())),
                None => {
                    let id = rec.base.blobs[a];
                    // A record that cannot be had leaves no snapshot rather than one that lacks it.
                    let Ok(bytes) = self.record_bytes(&previous, id) else { return };
                    (id, bytes)
                }
            };
            records.push(entry);
        }
        self.write_snapshot(records);
    }

    fn write_tree(&self, files: BTreeMap<String, File<'_>>) -> Result<gix::ObjectId, LineageError> {
        // Group by first path component, recursively; contents move down, never copied.
        let mut entries: Vec<(String, gix::objs::tree::EntryMode, gix::ObjectId)> = Vec::new();
        let mut dirs: BTreeMap<String, BTreeMap<String, File<'_>>> = BTreeMap::new();
        for (path, file) in files {
            match path.split_once('/') {
                Some((dir, rest)) => {
                    dirs.entry(dir.to_string()).or_default().insert(rest.to_string(), file);
                }
                None => {
                    let id = match file {
                        File::Written(id) => id,
                        File::Owned(data) => self.write_blob_once(&data)?,
                        File::Hashed(id, data) => self.write_blob_as(id, &data)?,
                        File::Borrowed(data) => self.write_blob_once(data)?,
                    };
                    entries.push((path, gix::objs::tree::EntryKind::Blob.into(), id));
                }
            }
        }
        for (name, sub) in dirs {
            entries.push((name, gix::objs::tree::EntryKind::Tree.into(), self.write_tree(sub)?));
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
        self.write_blob_as(id, data)
    }

    /// Writes `data`, whose blob id is `id`, unless the repository has it.
    fn write_blob_as(&self, id: gix::ObjectId, data: &[u8]) -> Result<gix::ObjectId, LineageError> {
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

    /// The lineage tip on a Git remote (`git ls-remote`), if it has the ref.
    pub fn remote_tip(&self, remote: &str) -> Result<Option<String>, LineageError> {
        let out = git_cli(self.repo.common_dir(), &["ls-remote", remote, &self.ref_name]).map_err(git)?;
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
}

/// A file of a lineage commit's tree: bytes to write, or a blob already in the repository.
enum File<'a> {
    Owned(Vec<u8>),
    /// Bytes whose blob id is already known.
    Hashed(gix::ObjectId, Vec<u8>),
    Borrowed(&'a [u8]),
    Written(gix::ObjectId),
}

fn commit_message(rec: &Record<'_>, applied_by: &str) -> String {
    use crate::plan::OutcomeStatus as S;
    let count = |a: Action| rec.outcomes.values().filter(|o| o.action == a && o.status == S::Applied).count();
    let failed = rec.outcomes.values().filter(|o| o.status != S::Applied).count();
    let mut summary = format!(
        "apply {}/{}: {} created, {} updated, {} replaced, {} deleted",
        rec.plan.plan.project,
        rec.plan.plan.environment,
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
        rec.plan.plan.source.commit.as_deref().unwrap_or("none"),
        rec.plan.plan.source.dirty,
        rec.plan.digest,
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

/// Creates a repository at `dir` (for `mlops init`).
pub fn init_repository(dir: &Path) -> Result<(), LineageError> {
    gix::init(dir).map(|_| ()).map_err(git)
}

pub fn in_repository(dir: &Path) -> bool {
    gix::discover_with_environment_overrides(dir).is_ok()
}
