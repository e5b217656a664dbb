//! Where a change came from: the CI context recorded as trailers, HEAD, and whether the
//! spec's inputs differ from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use mlops_provider_core::Value;

use super::{Lineage, LineageError, git};

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
    /// HEAD's commit id, if the repository has one.
    pub fn source_commit(&self) -> Option<String> {
        self.repo.head_id().ok().map(|id| id.to_string())
    }

    /// True if any of `paths` (files or folders) differs from HEAD, or is not tracked.
    /// One walk of HEAD's tree, entering only the folders that hold inputs. A file whose stat
    /// data matches Git's index entry, whose entry is HEAD's blob, and which is not racily
    /// clean (modified in the index file's own second) is clean without being read, as for
    /// `git status`; any other file is hashed once.
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
        let index = self.repo.try_index().ok().flatten();
        let mut committed = BTreeMap::new();
        // Git's index caches the tree it was last written as (its TREE extension, kept valid by
        // `git commit` and invalidated by any `git add`): when that is HEAD's tree, the index's
        // entries are HEAD's blobs and HEAD's tree need not be walked.
        let index_is_head = index
            .as_ref()
            .and_then(|i| i.tree())
            .is_some_and(|t| t.num_entries.is_some() && t.id == head_tree.detach());
        match &index {
            Some(index) if index_is_head => {
                for e in index.entries() {
                    let path = e.path(index).to_str_lossy();
                    if e.stage() == gix::index::entry::Stage::Unconflicted && within(&wanted, &path) {
                        committed.insert(path.into_owned(), e.id);
                    }
                }
            }
            _ => {
                if self.committed_blobs(head_tree.detach(), "", &wanted, &mut committed).is_err() {
                    return true;
                }
            }
        }
        let check = Check { committed: &committed, index: index.as_deref().map(|i| &**i) };
        let mut seen = BTreeSet::new();
        for (rel, abs) in &inputs {
            if self.differs(abs, rel, &check, &mut seen) {
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
        let holds_input = |path: &str| {
            let dir = format!("{path}/");
            wanted.range(dir.as_str()..).next().is_some_and(|w| w.starts_with(&dir))
        };
        let tree = self.repo.find_tree(tree).map_err(git)?;
        for e in tree.decode().map_err(git)?.entries.iter() {
            let name = e.filename.to_str_lossy();
            let path = if prefix.is_empty() { name.into_owned() } else { format!("{prefix}/{name}") };
            if e.mode.is_tree() {
                if within(wanted, &path) || holds_input(&path) {
                    self.committed_blobs(e.oid.to_owned(), &path, wanted, out)?;
                }
            } else if within(wanted, &path) {
                out.insert(path, e.oid.to_owned());
            }
        }
        Ok(())
    }

    /// True if the file or folder `abs` (`rel` in the work tree) holds anything not committed as is.
    fn differs(&self, abs: &Path, rel: &str, check: &Check<'_>, seen: &mut BTreeSet<String>) -> bool {
        if abs.is_file() {
            if !seen.insert(rel.to_string()) {
                return false;
            }
            let Some(want) = check.committed.get(rel) else { return true };
            if check.unchanged_since_index(abs, rel, want) {
                return false;
            }
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
            if self.differs(&entry.path(), &child, check, seen) {
                return true;
            }
        }
        false
    }
}

/// True if `path` is one of the `wanted` inputs or lies inside one (`""` is the whole work tree).
fn within(wanted: &BTreeSet<&str>, path: &str) -> bool {
    wanted.contains("") || path.match_indices('/').map(|(i, _)| &path[..i]).chain([path]).any(|p| wanted.contains(p))
}

/// What the dirty check compares the work tree with: HEAD's blobs by path, and Git's index.
struct Check<'a> {
    committed: &'a BTreeMap<String, gix::ObjectId>,
    index: Option<&'a gix::index::File>,
}

impl Check<'_> {
    /// True when Git's index proves the file at `abs` is HEAD's blob `want` without reading it:
    /// its entry holds `want` as a regular file, the file's stat data matches the entry's, and
    /// the entry is not racily clean (the file modified no earlier than the index was written,
    /// which stat data cannot tell apart).
    fn unchanged_since_index(&self, abs: &Path, rel: &str, want: &gix::ObjectId) -> bool {
        use gix::index::entry::{Mode, Stage, stat};
        let Some(index) = self.index else { return false };
        let Some(entry) = index.entry_by_path(rel.into()) else { return false };
        if entry.id != *want
            || entry.stage() != Stage::Unconflicted
            || !(entry.mode == Mode::FILE || entry.mode == Mode::FILE_EXECUTABLE)
        {
            return false;
        }
        let Ok(meta) = gix::index::fs::Metadata::from_path_no_follow(abs) else { return false };
        let Ok(now) = gix::index::entry::Stat::from_fs(&meta) else { return false };
        let options = stat::Options::default();
        entry.stat.matches(&now, options) && !entry.stat.is_racy(index.timestamp(), options)
    }
}
