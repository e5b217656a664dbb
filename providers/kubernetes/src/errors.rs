//! Kubernetes API errors, classified: what is retried, what is a conflict with another field
//! manager, what is a bad configuration.

use super::*;

/// A Kubernetes API error, classified.
pub(crate) fn kube_error(what: &str, e: kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(status) => {
            let kind = match status.code {
                409 => ErrorKind::Conflict,
                400 | 404 | 422 => ErrorKind::Invalid,
                429 | 500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Failed,
            };
            ProviderError::new(kind, format!("{what}: {} ({} {})", status.message, status.code, status.reason))
        }
        other => ProviderError::new(
            ErrorKind::Unavailable,
            format!("{what}: cannot reach the Kubernetes API: {}", chain(&other)),
        ),
    }
}

pub(crate) fn api_status(e: &kube::Error) -> Option<&Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// Field-manager conflicts of a failed apply, one line each.
pub(crate) fn conflicts_of(kind: &str, name: &str, status: &Status) -> Vec<String> {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.reason == "FieldManagerConflict" || c.field.starts_with('.'))
        .map(|c| format!("{kind}/{name} {}: {}", c.field, c.message))
        .collect();
    if causes.is_empty() { vec![format!("{kind}/{name}: {}", status.message)] } else { causes }
}
