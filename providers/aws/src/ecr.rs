//! Container images in ECR: a tag's digest from ECR's own API (`DescribeImages`), with the
//! provider's credentials, so a SageMaker image is pinned without `docker login`.

use mlops_provider_core::{ProviderError, ValuePath};

use crate::{Aws, error_code, sdk_error};

/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG` (or `@sha256:…`) as its parts; `None`
/// for an image elsewhere.
pub(crate) fn parse(image: &str) -> Option<(String, String, String, String)> {
    let (host, rest) = image.split_once('/')?;
    let (account, tail) = host.split_once(".dkr.ecr.")?;
    let region = tail.strip_suffix(".amazonaws.com").or_else(|| tail.strip_suffix(".amazonaws.com.cn"))?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || region.is_empty() {
        return None;
    }
    let (repository, tag) = match rest.split_once('@') {
        Some((r, d)) => (r, d),
        None => match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (rest, "latest"),
        },
    };
    Some((account.to_string(), region.to_string(), repository.to_string(), tag.to_string()))
}

/// The manifest digest of `repository:tag` (or `repository@digest`, checked to exist) in the
/// ECR registry of `account` in `region`.
pub(crate) async fn digest(
    p: &Aws,
    account: &str,
    region: &str,
    repository: &str,
    tag: &str,
) -> Result<String, ProviderError> {
    let c = p.clients().await?;
    let config =
        aws_sdk_ecr::config::Builder::from(&c.config).region(aws_config::Region::new(region.to_string())).build();
    let ecr = aws_sdk_ecr::Client::from_conf(config);
    let id = if tag.starts_with("sha256:") {
        aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(tag).build()
    } else {
        aws_sdk_ecr::types::ImageIdentifier::builder().image_tag(tag).build()
    };
    let image = format!("{account}.dkr.ecr.{region}.amazonaws.com/{repository}:{tag}");
    match ecr.describe_images().registry_id(account).repository_name(repository).image_ids(id).send().await {
        Ok(out) => out
            .image_details()
            .first()
            .and_then(|d| d.image_digest())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::invalid(format!("ECR has no image {image}")).at(ValuePath::key("image"))),
        Err(e)
            if matches!(error_code(&e).as_deref(), Some("ImageNotFoundException" | "RepositoryNotFoundException")) =>
        {
            Err(ProviderError::invalid(format!("ECR has no image {image}")).at(ValuePath::key("image")))
        }
        Err(e) => Err(sdk_error(&format!("describe the ECR image {image}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_images() {
        assert_eq!(
            parse("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"),
            Some(("683313688378".into(), "us-east-1".into(), "sagemaker-xgboost".into(), "1.7-1".into()))
        );
        assert_eq!(
            parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/server@sha256:ab").map(|p| (p.2, p.3)),
            Some(("team/server".into(), "sha256:ab".into()))
        );
        assert_eq!(parse("ghcr.io/acme/server:1"), None);
        assert_eq!(parse("12.dkr.ecr.us-east-1.amazonaws.com/x:1"), None);
    }
}
