//! The stack's lock: a ref per stack (and on a remote), its holder's record, stale-lock breaking.

use std::path::{Path, PathBuf};

use gix::refs::transaction::PreviousValue;
use serde::{Deserialize, Serialize};

use super::{Lineage, LineageError, git, git_cli};

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
            since: crate::plan::now_rfc3339(),
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
        // The lineage ref moves only under this lock: a Git lock file of it that a holder who died
        // on this host left (killed mid-update) is that holder's, and goes with its lock below.
        let ref_lock = self.repo.common_dir().join(format!("{}.lock", self.ref_name));
        // The lock ref's own Git lock file is only ever written by mlops taking or dropping this
        // lock, for milliseconds: one older than a second was left by a kill at that moment.
        let lock_lock = self.repo.common_dir().join(format!("{}.lock", self.lock_ref()));
        let left_by_a_kill = |p: &PathBuf| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(1)))
        };
        let dead_holder = self.lock_holder().is_some_and(|h| h.alive() == Some(false));
        if let Some(path) =
            self.stale_git_locks().into_iter().find(|p| !(dead_holder && *p == ref_lock) && *p != lock_lock)
        {
            return Err(LineageError::GitLockFile(path));
        }
        let id = self.holder_blob(operation)?;
        let mut last_error = String::new();
        let mut broke = None;
        // Losing a race can mean the winner's ref is still being written: look again, briefly.
        for _ in 0..40 {
            match self.repo.reference(self.lock_ref().as_str(), id, PreviousValue::MustNotExist, "mlops lock") {
                Ok(_) => return Ok(LockGuard { lineage: self, id, broke }),
                Err(e) => {
                    if let Some(holder) = self.lock_holder() {
                        if holder.alive() == Some(false) && broke.is_none() {
                            if let Some(dead) = self.lock_target() {
                                if self.delete_lock(Some(dead)).is_ok() {
                                    let _ = std::fs::remove_file(&ref_lock);
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
                    if left_by_a_kill(&lock_lock) {
                        let _ = std::fs::remove_file(&lock_lock);
                        continue;
                    }
                    last_error = e.to_string();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(LineageError::Git(format!("cannot take the lock {}: {last_error}", self.lock_ref()).into()))
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
        Err(LineageError::Git(format!("cannot take the lock on remote `{remote}`: {last_error}").into()))
    }
}

impl Lineage {
    /// Under the remote lock, before anything is read: brings this clone's lineage ref to the
    /// remote's. The remote's is taken when this clone has none or is behind it; this clone's is
    /// kept when it is ahead (records an earlier run could not push: pushed after this apply);
    /// diverged histories are refused. Returns the remote's commit, the lease for the push.
    pub fn pull_lineage(&self, remote: &str) -> Result<Option<String>, LineageError> {
        let git_dir = self.repo.common_dir().to_path_buf();
        let fail = |e: String| LineageError::Git(format!("cannot read the lineage on remote `{remote}`: {e}").into());
        let listed = git_cli(&git_dir, &["ls-remote", remote, &self.ref_name]).map_err(fail)?;
        let Some(theirs) = listed.split_whitespace().next().map(str::to_string) else { return Ok(None) };
        let local = self.tip()?.map(|t| t.to_string());
        if local.as_deref() == Some(theirs.as_str()) {
            return Ok(Some(theirs));
        }
        let peek =
            format!("refs/mlops/remote-lineage/{remote}/{}", self.ref_name.trim_start_matches("refs/mlops/lineage/"));
        git_cli(
            &git_dir,
            &["fetch", "--quiet", "--no-write-fetch-head", remote, &format!("+{}:{peek}", self.ref_name)],
        )
        .map_err(fail)?;
        let ancestor = |a: &str, b: &str| git_cli(&git_dir, &["merge-base", "--is-ancestor", a, b]).is_ok();
        match local {
            Some(local) if ancestor(&theirs, &local) => {}
            Some(local) if !ancestor(&local, &theirs) => {
                return Err(LineageError::Diverged {
                    ref_name: self.ref_name.clone(),
                    remote: remote.to_string(),
                    local,
                    theirs,
                });
            }
            _ => {
                git_cli(&git_dir, &["update-ref", &self.ref_name, &theirs]).map_err(fail)?;
            }
        }
        Ok(Some(theirs))
    }

    /// After an apply under the remote lock: pushes the lineage ref when it moved past `lease`
    /// (what `pull_lineage` found there), with that lease.
    pub fn push_lineage(&self, remote: &str, lease: Option<&str>) -> Result<(), LineageError> {
        let Some(tip) = self.tip()?.map(|t| t.to_string()) else { return Ok(()) };
        if lease == Some(tip.as_str()) {
            return Ok(());
        }
        let git_dir = self.repo.common_dir().to_path_buf();
        git_cli(
            &git_dir,
            &[
                "push",
                "--quiet",
                &format!("--force-with-lease={}:{}", self.ref_name, lease.unwrap_or_default()),
                remote,
                &format!("{tip}:{}", self.ref_name),
            ],
        )
        .map(|_| ())
        .map_err(|reason| LineageError::NotPushed {
            ref_name: self.ref_name.clone(),
            remote: remote.to_string(),
            commit: tip[..12].to_string(),
            reason,
        })
    }
}
