//! A test environment: a temporary Git repository, a cleared environment, a fixed clock and author.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NOW: &str = "1790000000";

pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            status: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.status, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl TestEnv {
    /// An empty Git repository with one commit of nothing.
    pub fn new() -> TestEnv {
        let env = TestEnv { dir: tempfile::tempdir().expect("tempdir") };
        env.git(&["init", "-q", "-b", "main"]);
        env.git(&["config", "user.name", "Test User"]);
        env.git(&["config", "user.email", "test@example.com"]);
        env
    }

    /// A copy of examples/quickstart, committed.
    pub fn quickstart() -> TestEnv {
        let env = TestEnv::new();
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"), env.path());
        env.write(".gitignore", ".mlops/\n");
        env.commit("quickstart");
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap()
    }

    fn base_command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", format!("{NOW} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{NOW} +0000"))
            .env("MLOPS_NOW", NOW)
            .env("NO_COLOR", "1");
        c
    }

    pub fn git(&self, args: &[&str]) -> String {
        let o = self.base_command("git").args(args).output().expect("git runs");
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    pub fn mlops(&self, args: &[&str]) -> Run {
        self.mlops_env(args, &[])
    }

    pub fn mlops_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.base_command(env!("CARGO_BIN_EXE_mlops"));
        c.args(args).stdin(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("mlops runs"))
    }

    /// `n` mlops processes started at once, for concurrency tests.
    pub fn spawn_mlops(&self, n: usize, args: &[&str]) -> Vec<std::process::Child> {
        (0..n)
            .map(|_| {
                self.base_command(env!("CARGO_BIN_EXE_mlops"))
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("mlops starts")
            })
            .collect()
    }

    /// Lineage commits of the default environment, newest first.
    pub fn lineage(&self, project: &str) -> Vec<String> {
        self.lineage_of(project, "default")
    }

    /// Lineage commits of an environment, newest first.
    pub fn lineage_of(&self, project: &str, environment: &str) -> Vec<String> {
        let r = format!("refs/mlops/lineage/{project}/{environment}");
        let o = self.base_command("git").args(["rev-list", &r]).output().unwrap();
        if !o.status.success() {
            return vec![];
        }
        String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
    }

    /// Replaces temp paths and hashes that change from run to run.
    pub fn filter(&self, s: &str) -> String {
        let p = self.path().display().to_string();
        let canon = self.path().canonicalize().unwrap().display().to_string();
        s.replace(&canon, "[TMP]").replace(&p, "[TMP]")
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".mlops" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The change for `address` in a `plan --json` output.
pub fn change<'a>(plan: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in {plan}"))
}

/// The attribute paths a change touches.
pub fn paths(change: &serde_json::Value) -> Vec<String> {
    change["attributes"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap().to_string()).collect()
}

/// The value of a test service's environment variable (`on`, when given, must be set too).
/// Provider tests are `#[ignore]`d, so they run only when asked for (`--include-ignored`, as
/// `scripts/test` does); asked for without their service, they fail: never a silent pass.
#[track_caller]
pub fn service(var: &str, on: Option<&str>, start: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() && on.is_none_or(|o| std::env::var_os(o).is_some()) => v,
        _ => panic!("test service missing: {var} is not set; start it with `eval \"$(scripts/services up {start})\"`"),
    }
}

/// The JSON an independent client printed (its last line): `null` when it printed nothing, and a
/// failure, never `null`, when it printed anything else, so absence is only ever what it said.
pub fn printed_json(text: &str, client: &str) -> serde_json::Value {
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else { return serde_json::Value::Null };
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{client} printed something that is not JSON ({e}):\n{text}"))
}

/// A diagnostic's text with miette's line wrapping undone.
pub fn flat(s: &str) -> String {
    s.lines().map(|l| l.trim_start().trim_start_matches('│').trim()).collect::<Vec<_>>().join(" ")
}
