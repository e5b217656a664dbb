//! The lineage index: every lineage commit's [`Entry`], one JSON line each, oldest first, in
//! `<git dir>/mlops/index/<project>/<environment>.jsonl`.
//!
//! A cache, never committed and never trusted over Git: each read checks that its last line is
//! the ref's tip and catches up by walking back from the tip to it (a full rebuild when the walk
//! does not meet it: a rewritten ref, a fresh clone). An apply appends its line after moving the
//! ref, so reading history costs what the question asks for, not what the history holds.
//!
//! Each line is checked as Git checks its own index: it carries a keyed digest of its content
//! (HMAC-SHA256 with the repository's key in `mlops/secret-key`), and each line's parent must be
//! the line before it. From the first line that fails either check (an edited, duplicated or
//! forged line), the index is rebuilt from Git. Only a regular file of bounded size is read: a
//! FIFO, a device or a symlink in its place is replaced, never read.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;

use super::{Entry, Lineage, LineageError, git, io};

const HEADER: &str = "mlops-lineage-index 2";

/// Past this size the file is not read (a history of 100,000 applies is about 100 MB).
const MAX_BYTES: u64 = 4 << 30;

/// Hex digits of a line's check: 128 bits of HMAC-SHA256.
const TAG_LEN: usize = 32;

/// The index of one stack's lineage, as read: lines are parsed only when asked for.
pub struct Index {
    text: String,
    /// The JSON of each line (after its check).
    lines: Vec<Range<usize>>,
    /// The oldest commit held, when its parent is not in this repository (a shallow fetch).
    pub shallow_end: Option<String>,
    /// Lines found that failed their check or broke the chain (rebuilt from Git).
    pub distrusted: usize,
}

fn tag(key: &[u8], json: &str) -> String {
    hex::encode(&crate::secrets::hmac(key, json.as_bytes())[..TAG_LEN / 2])
}

/// The raw value after `field` (`"commit":`, `"parent":`, `"seconds":`) among the leading
/// fields of an index line.
fn leading_field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let head = &line[..line.len().min(256)];
    let at = head.find(field)? + field.len();
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(s) => s.split('"').next(),
        None => rest.split([',', '}']).next(),
    }
}

impl Index {
    fn parse(text: String, key: &[u8]) -> Index {
        let mut lines = Vec::new();
        let mut distrusted = 0;
        let ok = text.starts_with(HEADER) && text.as_bytes().get(HEADER.len()) == Some(&b'\n');
        if ok {
            let mut start = HEADER.len() + 1;
            while start < text.len() {
                // A line without its newline is torn (a writer was killed): it ends the index.
                let Some(end) = text[start..].find('\n').map(|e| start + e) else { break };
                let line = &text[start..end];
                let checked = line.len() > TAG_LEN + 1
                    && line.as_bytes()[TAG_LEN] == b' '
                    && line.is_char_boundary(TAG_LEN)
                    && tag(key, &line[TAG_LEN + 1..]) == line[..TAG_LEN];
                if !checked {
                    distrusted = text[start..].lines().count();
                    break;
                }
                lines.push(start + TAG_LEN + 1..end);
                start = end + 1;
            }
        }
        let mut index = Index { text: if ok { text } else { String::new() }, lines, shallow_end: None, distrusted };
        // Each line's parent is the line before: a duplicated, dropped or reordered line (two
        // writers racing repeat the last lines) ends what is believed; Git rebuilds the rest.
        if let Some(bad) = (1..index.len()).find(|&i| index.parent(i) != Some(index.commit(i - 1))) {
            index.distrusted += index.len() - bad;
            index.lines.truncate(bad);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn line(&self, i: usize) -> &str {
        &self.text[self.lines[i].clone()]
    }

    pub fn commit(&self, i: usize) -> &str {
        leading_field(self.line(i), "\"commit\":").unwrap_or_default()
    }

    fn parent(&self, i: usize) -> Option<&str> {
        leading_field(self.line(i), "\"parent\":").filter(|p| *p != "null")
    }

    /// The apply's time, Unix seconds.
    pub fn seconds(&self, i: usize) -> i64 {
        leading_field(self.line(i), "\"seconds\":").and_then(|s| s.parse().ok()).unwrap_or_default()
    }

    pub fn entry(&self, i: usize) -> Result<Entry, LineageError> {
        serde_json::from_str(self.line(i))
            .map_err(|e| LineageError::Corrupt(self.commit(i).to_string(), format!("lineage index line: {e}")))
    }

    /// The position of `commit` (a full id).
    pub fn position(&self, commit: &str) -> Option<usize> {
        (0..self.len()).rev().find(|&i| self.commit(i) == commit)
    }

    /// Whether line `i` may mention the address `needle` was made for (a cheap text test; parse
    /// to be sure).
    pub fn mentions(&self, i: usize, needle: &Needle) -> bool {
        self.line(i).contains(needle.0.as_str())
    }

    fn last_commit(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|i| self.commit(i))
    }
}

/// What an index line holds when it names an address, built once per question, not per line.
pub struct Needle(String);

impl Needle {
    pub fn new(address: &str) -> Needle {
        Needle(format!("\"address\":\"{address}\""))
    }
}

fn line_of(entry: &Entry, key: &[u8]) -> String {
    let json = serde_json::to_string(entry).expect("entries serialize");
    format!("{} {json}\n", tag(key, &json))
}

/// The index file's text, if it is a regular file of bounded size (never a FIFO, a device or a
/// symlink: those are replaced by the rebuilt index).
fn read_regular(path: &std::path::Path) -> String {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() <= MAX_BYTES => std::fs::read_to_string(path).unwrap_or_default(),
        _ => String::new(),
    }
}

fn is_regular(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() <= MAX_BYTES)
}

impl Lineage {
    fn index_path(&self) -> PathBuf {
        let rel = self.ref_name.trim_start_matches("refs/mlops/lineage/");
        self.repo.common_dir().join("mlops").join("index").join(format!("{rel}.jsonl"))
    }

    fn index_key(&self) -> &[u8] {
        self.index_key.get_or_init(|| crate::secrets::repository_key(self.repo.common_dir()))
    }

    /// The index, caught up with the ref's tip (and saved, when it had to catch up).
    pub fn index(&self) -> Result<Index, LineageError> {
        let path = self.index_path();
        let key = self.index_key();
        let mut index = Index::parse(read_regular(&path), key);
        let distrusted = index.distrusted;
        let Some(tip) = self.tip()? else { return Ok(Index::parse(String::new(), key)) };
        let tip = tip.to_string();
        if index.last_commit() != Some(tip.as_str()) {
            // Walk back from the tip to the last indexed commit; not meeting it means the ref was
            // rewritten (or there is no index yet): the walk is then the whole history.
            let mut newer = Vec::new();
            let mut next = Some(gix::ObjectId::from_hex(tip.as_bytes()).map_err(git)?);
            let mut met = false;
            while let Some(id) = next {
                if index.last_commit() == Some(id.to_string().as_str()) {
                    met = true;
                    break;
                }
                let entry = self.entry(id)?;
                next = entry
                    .parent
                    .as_deref()
                    .map(|p| gix::ObjectId::from_hex(p.as_bytes()).map_err(git))
                    .transpose()?
                    .filter(|p| self.repo.has_object(*p));
                // Kept as its line, not as a value: a rebuild of 100,000 applies holds text only.
                newer.push(line_of(&entry, key));
            }
            // Met: the index up to its last line (the header included); not met: a new one.
            let mut text = match index.lines.last() {
                Some(last) if met => index.text[..last.end + 1].to_string(),
                _ => format!("{HEADER}\n"),
            };
            for line in newer.iter().rev() {
                text.push_str(line);
            }
            // Atomically replaced: concurrent readers write the same content.
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            if std::fs::write(&tmp, &text).is_ok() && std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            index = Index::parse(text, key);
            index.distrusted = distrusted;
        }
        if let Some(parent) = (!index.is_empty()).then(|| index.parent(0)).flatten() {
            let missing = gix::ObjectId::from_hex(parent.as_bytes()).map_or(true, |p| !self.repo.has_object(p));
            if missing {
                index.shallow_end = Some(index.commit(0).to_string());
            }
        }
        Ok(index)
    }

    /// Appends the entry of `commit`, just recorded on top of `parent`, when the index is at
    /// `parent` (otherwise the next read catches up). Costs one entry, whatever the history holds.
    pub(super) fn index_append(&self, parent: Option<&str>, entry: &Entry) -> Result<(), LineageError> {
        let path = self.index_path();
        let key = self.index_key();
        let last = if is_regular(&path) { last_line(&path) } else { None };
        let at_parent = match (parent, &last) {
            (None, _) => false,
            (Some(p), Some(line)) => {
                leading_field(line.get(TAG_LEN + 1..).unwrap_or_default(), "\"commit\":") == Some(p)
            }
            (Some(_), None) => false,
        };
        if parent.is_none() {
            // The first apply: the index starts here.
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
            }
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            std::fs::write(&tmp, format!("{HEADER}\n{}", line_of(entry, key)))
                .map_err(io(format!("write {}", tmp.display())))?;
            return std::fs::rename(&tmp, &path).map_err(io(format!("rename {}", tmp.display())));
        }
        if !at_parent {
            return Ok(());
        }
        let mut f =
            std::fs::OpenOptions::new().append(true).open(&path).map_err(io(format!("open {}", path.display())))?;
        f.write_all(line_of(entry, key).as_bytes()).map_err(io(format!("append to {}", path.display())))
    }
}

/// The last complete line of a file, read from its end.
fn last_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut take = 4096u64;
    loop {
        let start = len.saturating_sub(take);
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.strip_suffix('\n')?;
        match body.rfind('\n') {
            Some(i) => return Some(body[i + 1..].to_string()),
            None if start == 0 => return Some(body.to_string()),
            None => take *= 4,
        }
    }
}

/// The last lineage commit `mlops verify` found intact, kept beside the index (and, like it,
/// tagged with the repository's key): the next `verify` checks only the commits after it.
impl Lineage {
    fn verified_path(&self) -> PathBuf {
        let rel = self.ref_name.trim_start_matches("refs/mlops/lineage/");
        self.repo.common_dir().join("mlops").join("verified").join(rel)
    }

    /// The commit recorded as verified (and whether signatures were required then), when the
    /// record is there and its tag is this repository's.
    pub fn verified_tip(&self) -> Option<(String, bool)> {
        let text = std::fs::read_to_string(self.verified_path()).ok()?;
        let (body, tag) = text.trim().rsplit_once(' ')?;
        if hex::encode(&crate::secrets::hmac(self.index_key(), body.as_bytes())[..TAG_LEN / 2]) != tag {
            return None;
        }
        let (commit, signed) = body.split_once(' ')?;
        Some((commit.to_string(), signed == "signed"))
    }

    /// Records `commit` as verified (best effort: without the record the next verify is full).
    pub fn record_verified(&self, commit: &str, signed: bool) {
        let body = format!("{commit} {}", if signed { "signed" } else { "unsigned" });
        let tag = hex::encode(&crate::secrets::hmac(self.index_key(), body.as_bytes())[..TAG_LEN / 2]);
        let path = self.verified_path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, format!("{body} {tag}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}
