//! The Elasticsearch client side of the sink: index templates, `_bulk`
//! requests, and what each item's answer means for a retry.

use std::{path::PathBuf, time::Duration};

use elasticsearch::{
    auth::Credentials,
    cert::{Certificate, CertificateValidation},
    http::transport::{SingleNodeConnectionPool, TransportBuilder},
    indices::IndicesPutIndexTemplateParts,
    BulkParts, Elasticsearch,
};
use serde_json::Value;

use super::document::{index_templates, IndexNames};

/// How to reach Elasticsearch. Secrets come from the environment and are
/// never printed: `Debug` shows only which kind of credential is set.
#[derive(Clone)]
pub struct ElasticConfig {
    pub url: String,
    pub credentials: Option<ElasticAuth>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub enum ElasticAuth {
    Basic { user: String, password: String },
    ApiKey(String),
}

impl std::fmt::Debug for ElasticConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.credentials {
            None => "none",
            Some(ElasticAuth::Basic { .. }) => "user/password",
            Some(ElasticAuth::ApiKey(_)) => "API key",
        };
        f.debug_struct("ElasticConfig")
            .field("url", &self.url)
            .field("auth", &auth)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ElasticConfig {
    /// Reads credentials from ORDERDECK_ES_USER / ORDERDECK_ES_PASSWORD or
    /// ORDERDECK_ES_API_KEY (base64 "id:key"), so they stay out of argv.
    pub fn from_env(url: String, ca_file: Option<PathBuf>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = match (var("ORDERDECK_ES_API_KEY"), var("ORDERDECK_ES_USER")) {
            (Some(key), _) => Some(ElasticAuth::ApiKey(key)),
            (None, Some(user)) => Some(ElasticAuth::Basic {
                user,
                password: var("ORDERDECK_ES_PASSWORD").unwrap_or_default(),
            }),
            (None, None) => None,
        };
        Self {
            url,
            credentials,
            ca_file,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElasticError {
    #[error("invalid Elasticsearch settings: {0}")]
    Config(String),
    #[error("Elasticsearch is unreachable: {0}")]
    Unreachable(String),
    #[error("Elasticsearch answered {status}: {body}")]
    Status { status: u16, body: String },
}

impl ElasticError {
    /// What the answer means for whoever sends: back off, wait for it to
    /// come back, split the request, or stop.
    pub fn verdict(&self) -> Verdict {
        match self {
            ElasticError::Unreachable(_) => Verdict::Down,
            ElasticError::Status { status: 413, .. } => Verdict::TooLarge,
            ElasticError::Status { status, .. } if *status == 429 || *status >= 500 => {
                Verdict::Throttled
            }
            ElasticError::Status { .. } | ElasticError::Config(_) => Verdict::Refused,
        }
    }
}

/// How a failed request is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It answers but is overloaded or failing (429, 5xx): back-pressure.
    Throttled,
    /// No answer (connection refused, timeout): down.
    Down,
    /// 413: the request must be smaller.
    TooLarge,
    /// The whole request is refused (401, 403, 404, ...): retrying will not
    /// help until someone changes something.
    Refused,
}

/// What Elasticsearch did with one operation of a bulk request.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemOutcome {
    Indexed,
    /// 429 or 5xx for this item: send it again.
    Retry(String),
    /// Rejected for good (a mapping conflict, say), with the reason.
    Failed(String),
}

pub struct ElasticClient {
    client: Elasticsearch,
    names: IndexNames,
}

impl ElasticClient {
    pub fn new(config: &ElasticConfig, names: IndexNames) -> Result<Self, ElasticError> {
        let url = config.url.parse().map_err(|e| {
            ElasticError::Config(format!("--es {:?} is not a URL: {e}", config.url))
        })?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.timeout)
            .disable_proxy();
        if let Some(auth) = &config.credentials {
            transport = transport.auth(match auth.clone() {
                ElasticAuth::Basic { user, password } => Credentials::Basic(user, password),
                ElasticAuth::ApiKey(key) => Credentials::EncodedApiKey(key),
            });
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ElasticError::Config(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| {
                ElasticError::Config(format!("{} is not a PEM certificate: {e}", path.display()))
            })?;
            transport = transport.cert_validation(CertificateValidation::Full(certificate));
        }
        let transport = transport
            .build()
            .map_err(|e| ElasticError::Config(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            names,
        })
    }

    pub fn names(&self) -> &IndexNames {
        &self.names
    }

    /// Creates (or updates) both index templates.
    pub async fn ensure_templates(&self) -> Result<(), ElasticError> {
        for (name, body) in index_templates(&self.names) {
            let response = self
                .client
                .indices()
                .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                .body(body)
                .send()
                .await
                .map_err(|e| ElasticError::Unreachable(e.to_string()))?;
            check_status(response).await?;
        }
        Ok(())
    }

    /// Sends operations (each an action line and a source line) in one
    /// `_bulk` request and reports each one's outcome, in order.
    pub async fn bulk(&self, operations: &[String]) -> Result<Vec<ItemOutcome>, ElasticError> {
        let body: String = operations.concat();
        let response = self
            .client
            .bulk(BulkParts::None)
            .body(vec![body.as_str()])
            .send()
            .await
            .map_err(|e| ElasticError::Unreachable(e.to_string()))?;
        let response = check_status(response).await?;
        let answer: Value = response
            .json()
            .await
            .map_err(|e| ElasticError::Unreachable(format!("unreadable bulk response: {e}")))?;
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        if items.len() != operations.len() {
            return Err(ElasticError::Status {
                status: 200,
                body: format!(
                    "bulk answered {} items for {} operations",
                    items.len(),
                    operations.len()
                ),
            });
        }
        Ok(items.iter().map(item_outcome).collect())
    }
}

async fn check_status(
    response: elasticsearch::http::response::Response,
) -> Result<elasticsearch::http::response::Response, ElasticError> {
    let status = response.status_code().as_u16();
    if status < 300 {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(ElasticError::Status {
        status,
        body: body.chars().take(300).collect(),
    })
}

fn item_outcome(item: &Value) -> ItemOutcome {
    let result = item
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or_default();
    let status = result["status"].as_u64().unwrap_or(0);
    let reason = || {
        let error = &result["error"];
        format!(
            "{} {}: {}",
            status,
            error["type"].as_str().unwrap_or("error"),
            error["reason"].as_str().unwrap_or("no reason given")
        )
    };
    match status {
        200..=299 => ItemOutcome::Indexed,
        // The same or a later state of the order is there already.
        409 if result["error"]["type"] == "version_conflict_engine_exception" => {
            ItemOutcome::Indexed
        }
        429 | 500..=599 => ItemOutcome::Retry(reason()),
        _ => ItemOutcome::Failed(reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_statuses_decide_retry_or_failure() {
        assert_eq!(
            item_outcome(&json!({"index": {"status": 201}})),
            ItemOutcome::Indexed
        );
        assert!(matches!(
            item_outcome(&json!({"index": {"status": 429}})),
            ItemOutcome::Retry(_)
        ));
        assert!(matches!(
            item_outcome(&json!({"index": {"status": 503}})),
            ItemOutcome::Retry(_)
        ));
        assert_eq!(
            item_outcome(
                &json!({"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}})
            ),
            ItemOutcome::Indexed,
            "a newer state is already there"
        );
        let failed = item_outcome(
            &json!({"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [precio]"}}}),
        );
        assert_eq!(
            failed,
            ItemOutcome::Failed(
                "400 mapper_parsing_exception: failed to parse field [precio]".into()
            )
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = ElasticConfig {
            url: "http://localhost:9200".into(),
            credentials: Some(ElasticAuth::Basic {
                user: "elastic".into(),
                password: "hunter2".into(),
            }),
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("user/password"),
            "{shown}"
        );
    }
}
