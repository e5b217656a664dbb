//! Container images pinned by digest at plan time. A tag is resolved through the OCI distribution
//! API (`HEAD /v2/<repository>/manifests/<tag>`, crate `oci-client`), recorded as [`IMAGE_REF`]
//! (the image as written and its digest) and given to the provider as `name@sha256:…`, so what
//! lineage names is what ran: a tag moved since is a change the plan shows (`image-moved`), and a
//! rollback brings back the digest, not whatever the tag names now.
//!
//! Credentials: the `auths` of the Docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), else anonymous (with the registry's bearer-token handshake). A
//! registry on loopback is spoken to over plain HTTP, as Docker does.

use std::time::Duration;

use mlops_provider_core::{ErrorKind, ProviderError, Value, ValuePath};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// The attribute recording what a resource's `image` was resolved to at plan time:
/// `{ "image": as written, "digest": "sha256:…" }`.
pub const IMAGE_REF: &str = "image_ref";

/// `image` as the provider deploys it: `name@digest`.
pub fn pinned(image_ref: &Value) -> Option<String> {
    let image = image_ref.get("image")?.as_str()?;
    let digest = image_ref.get("digest")?.as_str()?;
    Some(format!("{}@{digest}", name_of(image)))
}

/// The image's name without its tag or digest.
fn name_of(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => &image[..slash + i],
        None => image,
    }
}

/// Whether the registry still has the manifest `image_ref` recorded (a rollback to it needs it).
pub async fn still_there(image_ref: &Value) -> Result<bool, ProviderError> {
    let Some(pinned) = pinned(image_ref) else { return Ok(true) };
    match digest_of(&pinned).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::Invalid => Ok(false),
        Err(e) => Err(e),
    }
}

/// The manifest digest `image` (a tag, or a digest that must exist) names in its registry.
pub async fn digest_of(image: &str) -> Result<String, ProviderError> {
    let at = || ValuePath::key("image");
    let reference: Reference = image.parse().map_err(|e| {
        ProviderError::invalid(format!(
            "`{image}` is not an image reference ({e}): e.g. `ghcr.io/acme/server:1.7`, or `…@sha256:<64 hex digits>`"
        ))
        .at(at())
    })?;
    let registry = reference.resolve_registry().to_string();
    let host = registry.split(':').next().unwrap_or_default();
    let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
    let client = Client::new(ClientConfig {
        protocol: if loopback { ClientProtocol::Http } else { ClientProtocol::Https },
        connect_timeout: Some(Duration::from_secs(5)),
        read_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    let auth = docker_auth(&registry)?;
    client.fetch_manifest_digest(&reference, &auth).await.map_err(|e| {
        use oci_client::errors::OciDistributionError as E;
        let chain = mlops_provider_core::error_chain(&e);
        match &e {
            E::RequestError(r) if r.is_connect() || r.is_timeout() => ProviderError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach the registry {registry} to pin the image {image} by digest ({chain}); \
                     tags are resolved at plan time: set `images: {{ pin: tag }}` to record them as written instead"
                ),
            ),
            E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => ProviderError::invalid(format!(
                "the registry {registry} refused to say what {image} is ({chain}): log in to it (`docker login`) \
                 so its credentials are in the Docker config's `auths`"
            ))
            .at(at()),
            _ => ProviderError::invalid(format!("the registry {registry} does not have {image}: {chain}")).at(at()),
        }
    })
}

/// The Docker config's credentials for `registry` (`auths.<registry>.auth`, base64 `user:password`).
fn docker_auth(registry: &str) -> Result<RegistryAuth, ProviderError> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")));
    let Some(path) = dir.map(|d| d.join("config.json")) else { return Ok(RegistryAuth::Anonymous) };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(RegistryAuth::Anonymous) };
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| ProviderError::invalid(format!("the Docker config {} is not JSON: {e}", path.display())))?;
    let names = [registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    let entry = names.iter().find_map(|n| config.pointer(&format!("/auths/{}", n.replace('/', "~1"))));
    let Some(encoded) = entry.and_then(|e| e.get("auth")).and_then(Value::as_str) else {
        return Ok(RegistryAuth::Anonymous);
    };
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
    match decoded {
        Some((user, password)) => Ok(RegistryAuth::Basic(user, password)),
        None => Err(ProviderError::invalid(format!(
            "the Docker config {} has an `auth` for {registry} that is not base64 `user:password`",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_and_pins() {
        assert_eq!(name_of("ghcr.io/acme/server:1.7"), "ghcr.io/acme/server");
        assert_eq!(name_of("127.0.0.1:5000/acme/server:1.7"), "127.0.0.1:5000/acme/server");
        assert_eq!(name_of("127.0.0.1:5000/acme/server"), "127.0.0.1:5000/acme/server");
        assert_eq!(name_of("acme/server@sha256:ab"), "acme/server");
        let r = json!({ "image": "127.0.0.1:5000/acme/server:1.7", "digest": "sha256:ab" });
        assert_eq!(pinned(&r).as_deref(), Some("127.0.0.1:5000/acme/server@sha256:ab"));
    }
}
