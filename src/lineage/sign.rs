//! Signed lineage commits, made and checked by Git itself with the user's signing configuration.

use super::{Lineage, LineageError, git, git_cli};

impl Lineage {
    /// Writes `commit` signed by Git itself (`git commit-tree -S`), so the signature is exactly
    /// what `git verify-commit` checks, made with the user's signing configuration (`gpg.format`,
    /// `user.signingkey`, SSH or OpenPGP).
    pub(super) fn commit_signed(&self, commit: &gix::objs::Commit) -> Result<gix::ObjectId, LineageError> {
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
