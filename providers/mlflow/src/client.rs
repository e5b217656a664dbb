//! MLflow's REST API (`/api/2.0/mlflow/...` and the artifact proxy), with retries: a transient
//! failure (connection, 429, 5xx) is tried again up to three times with a growing pause.

use std::time::Duration;

use mlops_provider_core::{ErrorKind, ProviderError, Value, error_chain};
use reqwest::{Method, StatusCode};

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
    auth: Auth,
}

impl Client {
    /// A client for the server at `base`, authenticated as MLflow's own clients are: from
    /// `MLFLOW_TRACKING_TOKEN`, else `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`.
    pub(crate) fn new(base: &str) -> Result<Client, ProviderError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth =
            match (var("MLFLOW_TRACKING_TOKEN"), var("MLFLOW_TRACKING_USERNAME"), var("MLFLOW_TRACKING_PASSWORD")) {
                (Some(t), _, _) => Auth::Bearer(t),
                (None, Some(u), Some(p)) => Auth::Basic(u, p),
                _ => Auth::None,
            };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ProviderError::invalid(format!("cannot build an HTTP client: {}", error_chain(&e))))?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, auth })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Calls `/api/2.0/mlflow/{path}`: `Ok(None)` when MLflow says the object does not exist.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, ProviderError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(method, &url, query, body.map(|b| Body::Json(b.clone()))).await
    }

    /// Uploads bytes through the server's artifact proxy, to `mlflow-artifacts:/{path}`.
    pub(crate) async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<(), ProviderError> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base);
        self.send(Method::PUT, &url, &[], Some(Body::Bytes(bytes))).await.map(|_| ())
    }

    /// `req` with the credentials MLflow's clients would send.
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        }
    }

    /// The bytes of the file `path` run `run_id` logged, through the server's `get-artifact`.
    pub(crate) async fn download(&self, run_id: &str, path: &str) -> Result<Vec<u8>, ProviderError> {
        let url = format!("{}/get-artifact", self.base);
        let req = self.authed(self.http.get(&url).query(&[("run_uuid", run_id), ("path", path)]));
        let unavailable = |e: reqwest::Error| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!(
                    "MLflow at {} did not send artifact `{path}` of run `{run_id}`: {}",
                    self.base,
                    error_chain(&e)
                ),
            )
        };
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            // Not a success: MLflow's error as it says it, else "does not exist".
            return Err(answer(status, &text, &Method::GET, &url)
                .err()
                .unwrap_or_else(|| ProviderError::invalid(format!("MLflow run `{run_id}` has no artifact `{path}`"))));
        }
        Ok(resp.bytes().await.map_err(unavailable)?.to_vec())
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
    ) -> Result<Option<Value>, ProviderError> {
        let mut attempt = 0u32;
        loop {
            let mut req = self.authed(self.http.request(method.clone(), url).query(query));
            req = match &body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Bytes(b)) => req.body(b.clone()),
                None => req,
            };
            let transient = match req.send().await {
                Err(e) if attempt < 3 && (e.is_connect() || e.is_timeout()) => error_chain(&e),
                Err(e) => {
                    return Err(ProviderError::new(
                        ErrorKind::Unavailable,
                        format!("MLflow at {} did not answer {method} {url}: {}", self.base, error_chain(&e)),
                    ));
                }
                Ok(resp) => {
                    let status = resp.status();
                    if attempt < 3 && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        format!("HTTP {status}")
                    } else {
                        let text = resp.text().await.unwrap_or_default();
                        return answer(status, &text, &method, url);
                    }
                }
            };
            let _ = transient;
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
}

enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

/// An HTTP answer as a value, "does not exist" as `None`, anything else as a typed error.
fn answer(status: StatusCode, text: &str, method: &Method, url: &str) -> Result<Option<Value>, ProviderError> {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = json.get("error_code").and_then(Value::as_str).unwrap_or_default();
    let message = json.get("message").and_then(Value::as_str).unwrap_or(text).trim().to_string();
    if status.is_success() {
        return Ok(Some(if json.is_null() { Value::Object(Default::default()) } else { json }));
    }
    if code == "RESOURCE_DOES_NOT_EXIST" || (status == StatusCode::NOT_FOUND && code.is_empty()) {
        return Ok(None);
    }
    let kind = match (status.as_u16(), code) {
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorKind::Invalid,
        (_, "RESOURCE_ALREADY_EXISTS") => ErrorKind::Conflict,
        (400..=499, _) => ErrorKind::Invalid,
        _ => ErrorKind::Unavailable,
    };
    let hint = if matches!(status.as_u16(), 401 | 403) {
        " (set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    } else {
        ""
    };
    let code = if code.is_empty() { String::new() } else { format!(" {code}") };
    Err(ProviderError::new(kind, format!("MLflow refused {method} {url}: HTTP {status}{code}: {message}{hint}")))
}
