//! A KServe rollout driven by mlops: the new model is applied with `canaryTrafficPercent` at each
//! step's share (KServe keeps the previous revision serving the rest, in Serverless mode), each
//! step must be Ready, and still Ready after its interval; the last step removes the canary
//! (the new revision takes all the traffic) and bakes. A step that is not ready resets the
//! InferenceService to the model it served before, and the change ends `rolled-back`.

use mlops_provider_core::rollout::Rollout;

use super::*;

impl Cluster {
    /// Whether applying `want` moves the InferenceService or the Seldon Model to another model
    /// than `live` serves.
    pub(crate) fn moves_model(live: Option<&LiveState>, want: &Attributes) -> bool {
        let digest = DIGEST_ANNOTATION.replace('/', "~1");
        let paths = [
            (
                Part::InferenceService,
                "/spec/predictor/model/storageUri",
                format!("/spec/predictor/annotations/{digest}"),
            ),
            (Part::SeldonModel, "/spec/storageUri", format!("/metadata/annotations/{digest}")),
        ];
        paths.iter().any(|(part, uri, digest)| {
            let object = |a: Option<&Attributes>| a.and_then(|a| a.get(part.attribute())).cloned();
            let (Some(before), Some(after)) = (object(live.map(|l| &l.attributes)), object(Some(want))) else {
                return false;
            };
            [*uri, digest.as_str()].iter().any(|p| before.pointer(p) != after.pointer(p))
        })
    }

    /// Rolls the InferenceService out step by step (see the module).
    pub(crate) async fn roll_out(
        &self,
        request: &ApplyRequest<'_>,
        rollout: &Rollout,
        namespace: &str,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let (address, name) = (request.address, &request.address.name);
        let part = Part::InferenceService;
        let attrs = &request.desired.attributes;
        let desired = Self::identity(part, name, namespace, &attrs[part.attribute()]);
        let previous = request
            .live
            .and_then(|l| l.attributes.get(part.attribute()))
            .map(|v| Self::identity(part, name, namespace, v));
        let timeout = wait_timeout(request.config);
        let steps = rollout.steps();
        for (i, share) in steps.iter().enumerate() {
            let mut manifest = desired.clone();
            if *share < 100 {
                manifest["spec"]["predictor"]["canaryTrafficPercent"] = json!(share);
            }
            progress.report(&format!(
                "rollout step {}/{}: {share}% of the traffic to the new model of {namespace}/{name}",
                i + 1,
                steps.len()
            ));
            if let Err(e) = self.ssa(&manifest, part, false, request.options.force_conflicts).await {
                let e = kube_error(&format!("apply InferenceService {namespace}/{name}"), e);
                return Err(self.with_state(e, address, request.desired, i > 0).await);
            }
            let pause = if *share < 100 { rollout.interval } else { rollout.bake };
            let checked = async {
                self.wait_ready(&[part], namespace, name, timeout, progress).await?;
                if !pause.is_zero() {
                    let what = if *share < 100 { "before the next step" } else { "baking" };
                    progress.report(&format!("{share}% ready; waiting {}s {what}", pause.as_secs()));
                    tokio::time::sleep(pause).await;
                    // Still ready after the wait: a revision that fails under traffic aborts too.
                    let now = self.get(namespace, part, name).await?;
                    let (ok, line) = now.as_ref().map(|o| readiness(part, o)).unwrap_or((false, "gone".into()));
                    if !ok {
                        return Err(ProviderError::failed(format!(
                            "no longer ready after {}s: {line}",
                            pause.as_secs()
                        )));
                    }
                }
                Ok(())
            };
            if let Err(e) = checked.await {
                return Err(self.abort(request, rollout, previous.as_ref(), (i + 1, *share), e, progress).await);
            }
        }
        self.read_endpoint(address, None, Some(request.desired))
            .await?
            .ok_or_else(|| ProviderError::failed(format!("{namespace}/{name} is missing right after it was applied")))
    }

    /// A step failed: with `rollback: auto`, the InferenceService goes back to the model it
    /// served before; the error says which step failed and why, with what is live.
    async fn abort(
        &self,
        request: &ApplyRequest<'_>,
        rollout: &Rollout,
        previous: Option<&Value>,
        (step, share): (usize, u64),
        e: ProviderError,
        progress: &dyn Progress,
    ) -> ProviderError {
        let (address, name) = (request.address, &request.address.name);
        let failed = format!("rollout step {step} ({share}%) failed: {}", e.message);
        let Some(previous) = previous.filter(|_| rollout.auto_rollback) else {
            return self.with_state(ProviderError::new(e.kind, failed), address, request.desired, true).await;
        };
        progress.report(&format!("{failed}; resetting {name} to the model it served before"));
        if let Err(reset) = self.ssa(previous, Part::InferenceService, false, true).await {
            let e = ProviderError::failed(format!("{failed}; the reset to the previous model failed too: {reset}"));
            return self.with_state(e, address, request.desired, true).await;
        }
        let e = ProviderError::new(ErrorKind::RolledBack, format!("{failed}; reset to the model it served before"));
        self.with_state(e, address, request.desired, true).await
    }
}
