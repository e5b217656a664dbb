//! `${secret:NAME}` (an environment variable) and `${secret:file:PATH}` (a file's contents):
//! values that reach the backend and nothing else. The loaded spec carries a marker in their
//! place, `(secret NAME, hmac:…)`, a keyed digest of the value, so a rotation is a visible change
//! while the value cannot be guessed from plans, PR comments or lineage. The engine puts the
//! values back only into what it hands a provider to apply, and masks everything it reads back.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The secrets of one loaded spec: marker → value. Never serialized, never printed.
#[derive(Clone, Default)]
pub struct Secrets {
    key: Vec<u8>,
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} value(s), redacted)", self.values.len())
    }
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The digest key: `MLOPS_SECRET_KEY` when set (give every CI runner the same one, so digests
/// agree across clones), else a random key kept in the repository's Git directory
/// (`.git/mlops/secret-key`, never committed), created on first use.
pub fn key(base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    if let Some(k) = env("MLOPS_SECRET_KEY").filter(|k| !k.is_empty()) {
        return k.into_bytes();
    }
    // The repository lineage uses (GIT_DIR honoured as git does), next to its journal.
    let git_dir = gix::discover_with_environment_overrides(base_dir).ok().map(|r| r.common_dir().to_path_buf());
    let Some(git_dir) = git_dir else { return random_bytes() };
    repository_key(&git_dir)
}

/// The random key kept in a Git directory (`mlops/secret-key`, never committed), created on
/// first use: it keys the secrets' digests and the lineage index's line checks.
pub fn repository_key(git_dir: &Path) -> Vec<u8> {
    let path = git_dir.join("mlops").join("secret-key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 32 {
            return k;
        }
    }
    let k = random_bytes();
    let _ = std::fs::create_dir_all(path.parent().expect("has a parent"));
    // Created exclusively: two processes racing both end up reading the winner's key.
    use std::io::Write;
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut f) => {
            let _ = f.write_all(&k);
            k
        }
        Err(_) => std::fs::read(&path).ok().filter(|k| k.len() >= 32).unwrap_or(k),
    }
}

fn random_bytes() -> Vec<u8> {
    use std::io::Read;
    let mut k = vec![0u8; 32];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut k)).is_err() {
        // No urandom: a per-process value; digests then differ between runs, values still hidden.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        k = Sha256::digest(seed.as_bytes()).to_vec();
    }
    k
}

const MARKER_START: &str = "(secret ";

impl Secrets {
    pub fn new(key: Vec<u8>) -> Self {
        Secrets { key, values: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn digest(&self, value: &str) -> String {
        hex::encode(&hmac(&self.key, value.as_bytes())[..8])
    }

    /// Registers a value and returns the marker that stands for it.
    pub fn marker(&mut self, name: &str, value: String) -> String {
        let marker = format!("{MARKER_START}{name}, hmac:{})", self.digest(&value));
        self.values.insert(marker.clone(), value);
        marker
    }

    /// `v` with every marker replaced by its value: for the provider request only.
    pub fn reveal(&self, v: &Value) -> Value {
        if self.values.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) if s.contains(MARKER_START) => {
                let mut out = s.clone();
                for (marker, value) in &self.values {
                    out = out.replace(marker.as_str(), value);
                }
                Value::String(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.reveal(i)).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), self.reveal(v))).collect()),
            other => other.clone(),
        }
    }

    /// A string with every known value replaced by its marker.
    pub fn mask_str(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (marker, value) in &self.values {
            if !value.is_empty() {
                out = out.replace(value.as_str(), marker);
            }
        }
        out
    }

    /// Masks what a provider read back: the current values (anywhere in a string), and earlier
    /// values — `known` holds strings with markers as recorded (e.g. in lineage); a string read
    /// back that matches one around its marker, with the keyed digest of what stands in the
    /// marker's place, gets that marker back. So a rotated secret still shows as its old marker,
    /// never in clear, also inside a longer string (`postgres://app:…@db`).
    pub fn mask(&self, v: &mut Value, known: &[String]) {
        match v {
            Value::String(s) => {
                if !self.values.is_empty() {
                    *s = self.mask_str(s);
                }
                for template in known {
                    if let Some(masked) = self.match_template(s, template) {
                        *s = masked;
                        break;
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.mask(i, known)),
            Value::Object(m) => m.values_mut().for_each(|i| self.mask(i, known)),
            _ => {}
        }
    }

    /// `s` with its secret part masked, if `s` is `template` with a value where its (one) marker is.
    fn match_template(&self, s: &str, template: &str) -> Option<String> {
        let start = template.find(MARKER_START)?;
        let end = start + template[start..].find(')')? + 1;
        let (pre, marker, post) = (&template[..start], &template[start..end], &template[end..]);
        if post.contains(MARKER_START) || s.len() < pre.len() + post.len() {
            return None;
        }
        let middle = s.strip_prefix(pre)?.strip_suffix(post)?;
        if middle.contains(MARKER_START) {
            return None;
        }
        marker.ends_with(&format!("hmac:{})", self.digest(middle))).then(|| template.to_string())
    }

    /// Masks by place: wherever a template (what the spec wants, what lineage recorded) holds a
    /// string with a marker, the value read back at the same place must already be one of those
    /// strings (after [`Self::mask`]); anything else the backend holds there — a value set by
    /// hand, a rotation this clone cannot know — becomes `(secret NAME changed)`, never clear text.
    pub fn mask_places(v: &mut Value, templates: &[&Value]) {
        let marked: Vec<&str> =
            templates.iter().filter_map(|t| t.as_str()).filter(|t| t.contains(MARKER_START)).collect();
        if let Some(first) = marked.first() {
            if !v.as_str().is_some_and(|s| marked.contains(&s)) {
                *v = Value::String(changed_marker(first));
            }
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    let sub: Vec<&Value> = templates.iter().filter_map(|t| t.get(k.as_str())).collect();
                    if !sub.is_empty() {
                        Self::mask_places(child, &sub);
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    let sub: Vec<&Value> = templates.iter().filter_map(|t| t.get(i)).collect();
                    if !sub.is_empty() {
                        Self::mask_places(child, &sub);
                    }
                }
            }
            _ => {}
        }
    }

    /// The strings `v` holds that contain markers, e.g. in a recorded state.
    pub fn markers_in(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.contains(MARKER_START) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| Self::markers_in(i, out)),
            Value::Object(m) => m.values().for_each(|i| Self::markers_in(i, out)),
            _ => {}
        }
    }
}

/// The strings with markers that these attribute sets hold (e.g. what lineage recorded and
/// what the spec wants): what a value read back is masked as, also after a rotation.
pub fn markers_of<'a>(sets: impl IntoIterator<Item = &'a crate::provider::Attributes>) -> Vec<String> {
    let mut out = Vec::new();
    for attrs in sets {
        attrs.values().for_each(|v| Secrets::markers_in(v, &mut out));
    }
    out
}

/// What stands at a secret's place when the backend holds a value of no known marker: the
/// names of the template's secrets, no digest (the value must not be guessable from it).
fn changed_marker(template: &str) -> String {
    let names: Vec<&str> = template
        .match_indices(MARKER_START)
        .filter_map(|(i, _)| template[i + MARKER_START.len()..].split(',').next())
        .collect();
    format!("{MARKER_START}{} changed)", names.join(", "))
}

/// Masks by place every attribute of `state` (see [`Secrets::mask_places`]).
pub fn mask_attribute_places(state: &mut crate::provider::Attributes, templates: &[&crate::provider::Attributes]) {
    for (k, v) in state.iter_mut() {
        let sub: Vec<&Value> = templates.iter().filter_map(|t| t.get(k)).collect();
        if !sub.is_empty() {
            Secrets::mask_places(v, &sub);
        }
    }
}

/// A state read back from a provider, with secret values masked: every value the spec's secrets
/// hold, and every value at a place where `places` (what the spec wants, what lineage recorded)
/// hold a secret's marker, whatever the backend holds there.
pub(crate) fn mask_state(
    secrets: &Secrets,
    state: &mut crate::plan::RecordedState,
    known: &[String],
    places: &[&crate::provider::Attributes],
) {
    for v in state.attributes.values_mut().chain(state.outputs.values_mut()) {
        secrets.mask(v, known);
    }
    mask_attribute_places(&mut state.attributes, places);
}

/// Whether an environment variable's name says it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL"].iter().any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn markers_reveal_and_mask_round_trip() {
        let mut s = Secrets::new(b"k".to_vec());
        let m = s.marker("DB_PASSWORD", "hunter2".into());
        assert!(m.starts_with("(secret DB_PASSWORD, hmac:") && !m.contains("hunter2"));
        let spec = serde_json::json!({ "url": format!("postgres://u:{m}@db"), "n": 1 });
        let revealed = s.reveal(&spec);
        assert_eq!(revealed["url"], "postgres://u:hunter2@db");
        let mut back = revealed.clone();
        s.mask(&mut back, &[]);
        assert_eq!(back, spec);
        // A rotated value: the old marker is known from lineage; its value is masked by digest.
        let mut rotated = Secrets::new(b"k".to_vec());
        let _new = rotated.marker("DB_PASSWORD", "correct horse".into());
        let mut live = serde_json::json!({ "env": "hunter2", "url": "postgres://u:hunter2@db" });
        let url = format!("postgres://u:{m}@db");
        rotated.mask(&mut live, &[m.clone(), url.clone()]);
        assert_eq!(live["env"], Value::String(m));
        assert_eq!(live["url"], Value::String(url));
    }

    #[test]
    fn a_value_at_a_secrets_place_that_no_marker_knows_is_masked_as_changed() {
        let mut s = Secrets::new(b"k".to_vec());
        let m = s.marker("DB_PW", "hunter2".into());
        let want = serde_json::json!({ "env": { "DB_PW": m, "LOG": "info" } });
        let mut live = serde_json::json!({ "env": { "DB_PW": "set-by-hand", "LOG": "debug" } });
        s.mask(&mut live, &[]);
        Secrets::mask_places(&mut live, &[&want]);
        assert_eq!(live["env"]["DB_PW"], "(secret DB_PW changed)");
        assert_eq!(live["env"]["LOG"], "debug", "other places are shown as they are");
        let mut same = serde_json::json!({ "env": { "DB_PW": "hunter2" } });
        s.mask(&mut same, &[]);
        Secrets::mask_places(&mut same, &[&want]);
        assert_eq!(same["env"]["DB_PW"], Value::String(m));
    }
}
