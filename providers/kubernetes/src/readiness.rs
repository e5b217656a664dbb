//! Readiness of the objects an endpoint is made of, and the wait for it.

use super::*;

/// Readiness of one object, and a line saying why not.
pub(crate) fn readiness(part: Part, o: &Value) -> (bool, String) {
    let generation = o.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let status = o.get("status").cloned().unwrap_or(Value::Null);
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    match part {
        Part::Service | Part::Autoscaler => (true, "ready".into()),
        Part::Deployment => {
            let want = o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let n = |k: &str| status.get(k).and_then(Value::as_i64).unwrap_or(0);
            let (updated, available) = (n("updatedReplicas"), n("availableReplicas"));
            let ok = observed.is_some_and(|g| g >= generation) && updated >= want && available >= want;
            (ok, format!("{available}/{want} replicas available, {updated} updated"))
        }
        // KServe's and Seldon's controllers both report a `Ready` condition (Knative's status).
        Part::InferenceService | Part::SeldonModel | Part::Experiment => {
            let conditions = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let ready = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
            let current = observed.is_none_or(|g| g >= generation);
            match ready {
                Some(c) if c.get("status").and_then(Value::as_str) == Some("True") && current => (true, "Ready".into()),
                Some(c) => {
                    let why = [c.get("reason"), c.get("message")]
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(": ");
                    (false, if why.is_empty() { "not Ready yet".into() } else { format!("not Ready: {why}") })
                }
                None => (false, "no Ready condition yet".into()),
            }
        }
    }
}

/// A Deployment whose rollout the controller gave up on.
pub(crate) fn rollout_failed(o: &Value) -> Option<String> {
    let conditions = o.pointer("/status/conditions").and_then(Value::as_array)?;
    conditions.iter().find_map(|c| {
        (c.get("type").and_then(Value::as_str) == Some("Progressing")
            && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded"))
        .then(|| c.get("message").and_then(Value::as_str).unwrap_or("progress deadline exceeded").to_string())
    })
}

impl Cluster {
    /// Waits until every part is ready, reporting each new status line.
    pub(crate) async fn wait_ready(
        &self,
        parts: &[Part],
        namespace: &str,
        name: &str,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let mut all = true;
            let mut lines = Vec::new();
            for part in parts {
                let kind = part.resource().kind;
                let Some(o) = self.get(namespace, *part, name).await? else {
                    return Err(ProviderError::failed(format!("{kind} {namespace}/{name} disappeared while waiting")));
                };
                if let Some(why) = rollout_failed(&o) {
                    return Err(ProviderError::failed(format!("{kind} {namespace}/{name} rollout failed: {why}")));
                }
                let (ok, line) = readiness(*part, &o);
                all &= ok;
                if *part != Part::Service {
                    lines.push(format!("{kind} {line}"));
                }
            }
            if all {
                return Ok(());
            }
            let line = lines.join("; ");
            if line != last {
                progress.report(&line);
                last = line.clone();
            }
            if started.elapsed() >= timeout {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!("{namespace}/{name} was not ready after {}s (wait_timeout): {line}", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(POLL.min(timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(10))))
                .await;
        }
    }
}
