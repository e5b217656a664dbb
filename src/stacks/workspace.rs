//! `mlops-workspace.yaml`, optional, at the repository's root: the folders that hold no stack, the
//! files a stack's `--changed` also watches, and defaults for `--base` and `--stacks-at-once`.
//!
//! ```yaml
//! version: 1
//! exclude: [sandbox/**]                      # spec folders (or spec files) that are not stacks
//! watch:                                     # stack folders → files whose change affects them
//!   serving/*: [shared/schemas/**, docker/serving.Dockerfile]
//! defaults: { base: origin/main, stacks_at_once: 8 }
//! ```

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::StacksError;

/// The file's name at the repository root.
pub const FILE: &str = "mlops-workspace.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Spanned<u32>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    watch: std::collections::HashMap<Spanned<String>, Vec<Spanned<String>>>,
    #[serde(default)]
    defaults: Defaults,
}

/// What `--base` and `--stacks-at-once` are when not given.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub base: Option<String>,
    pub stacks_at_once: Option<u16>,
}

/// The workspace file, read; empty when there is none.
#[derive(Default)]
pub struct Workspace {
    exclude: Option<GlobSet>,
    /// Stack folder globs, each with the files those stacks watch.
    watch: Vec<(GlobSet, GlobSet)>,
    pub defaults: Defaults,
}

impl Workspace {
    /// Reads `root`/mlops-workspace.yaml, if there is one: an unknown key, a wrong type or a
    /// glob that does not parse is an error at its line.
    pub fn read(root: &Path) -> Result<Workspace, StacksError> {
        let text = match std::fs::read_to_string(root.join(FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Workspace::default()),
            Err(e) => return Err(error(String::new(), None, format!("cannot read it: {e}"), "check its permissions")),
        };
        let file: File = serde_saphyr::from_str(&text).map_err(|e| {
            let at = e.location().map(|l| crate::spec::yaml::location_span(&l, &text).unwrap_or_default());
            // serde-saphyr says `error: line N column M: …`: the label shows where.
            let text_of = e.to_string();
            let first = text_of.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                Some((_, rest)) => rest.to_string(),
                None => first.to_string(),
            };
            error(text.clone(), at, message, "it has `version: 1`, and may have `exclude`, `watch` and `defaults` (`base`, `stacks_at_once`): docs/stacks.md")
        })?;
        if file.version.value != 1 {
            let at = crate::spec::yaml::location_span(&file.version.referenced, &text);
            return Err(error(
                text,
                at,
                format!("version {} is not one mlops reads", file.version.value),
                "write `version: 1`",
            ));
        }
        if file.defaults.stacks_at_once == Some(0) {
            return Err(error(text, None, "`defaults.stacks_at_once` is 0".into(), "at least 1 stack runs at once"));
        }
        let set = |globs: &[Spanned<String>]| -> Result<GlobSet, StacksError> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                let glob = Glob::new(g.value.trim_end_matches('/')).map_err(|e| {
                    let at = crate::spec::yaml::location_span(&g.referenced, &text);
                    error(
                        text.clone(),
                        at,
                        format!("`{}` is not a glob: {}", g.value, e.kind()),
                        "globs are written as in .gitignore: `*` within a folder, `**` across folders",
                    )
                })?;
                b.add(glob);
            }
            Ok(b.build().expect("globs that parsed build"))
        };
        let exclude = (!file.exclude.is_empty()).then(|| set(&file.exclude)).transpose()?;
        let mut watch = Vec::new();
        for (folders, files) in &file.watch {
            watch.push((set(std::slice::from_ref(folders))?, set(files)?));
        }
        Ok(Workspace { exclude, watch, defaults: file.defaults })
    }

    /// Whether the spec at `spec` (from the root) is left out: its folder or its path matches `exclude`.
    pub fn excludes(&self, spec: &str) -> bool {
        let folder = Path::new(spec).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        self.exclude.as_ref().is_some_and(|x| x.is_match(spec) || (!folder.is_empty() && x.is_match(&folder)))
    }

    /// Whether a stack in `folder` watches `file` (both from the root).
    pub fn watches(&self, folder: &str, file: &str) -> bool {
        self.watch.iter().any(|(folders, files)| folders.is_match(folder) && files.is_match(file))
    }
}

fn error(text: String, at: Option<crate::spec::yaml::Span>, message: String, help: &str) -> StacksError {
    let at = at.unwrap_or_default();
    StacksError::Workspace(Box::new(WorkspaceError {
        message,
        src: miette::NamedSource::new(FILE, text).with_language("yaml"),
        at: (at.offset, at.len).into(),
        help: help.to_string(),
    }))
}

/// The workspace file cannot be used: what, at its line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("mlops-workspace.yaml: {message}")]
#[diagnostic(code(stacks::workspace))]
pub struct WorkspaceError {
    message: String,
    #[source_code]
    src: miette::NamedSource<String>,
    #[label("here")]
    at: miette::SourceSpan,
    #[help]
    help: String,
}
