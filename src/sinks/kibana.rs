//! Imports orderdeck's Kibana saved objects (data views and the dashboard)
//! through Kibana's saved-objects import API, overwriting older versions.

use std::time::Duration;

use serde_json::Value;

use super::elastic::{ElasticAuth, ElasticConfig};

/// The saved objects, built into the binary so `export --kibana` works from
/// anywhere: `assets/kibana/orderdeck.ndjson`.
pub const SAVED_OBJECTS: &str = include_str!("../../assets/kibana/orderdeck.ndjson");

#[derive(Debug, thiserror::Error)]
pub enum KibanaError {
    #[error("cannot reach Kibana at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Kibana refused the import ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// Posts the saved objects; returns how many Kibana imported.
pub async fn import_saved_objects(kibana: &str, auth: &ElasticConfig) -> Result<u64, KibanaError> {
    let url = format!(
        "{}/api/saved_objects/_import?overwrite=true",
        kibana.trim_end_matches('/')
    );
    let unreachable = |reason: String| KibanaError::Unreachable {
        url: kibana.to_owned(),
        reason,
    };
    let file = reqwest::multipart::Part::text(SAVED_OBJECTS)
        .file_name("orderdeck.ndjson")
        .mime_str("application/ndjson")
        .map_err(|e| unreachable(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = client
        .post(&url)
        .header("kbn-xsrf", "true")
        .multipart(reqwest::multipart::Form::new().part("file", file));
    request = match &auth.credentials {
        Some(ElasticAuth::Basic { user, password }) => request.basic_auth(user, Some(password)),
        Some(ElasticAuth::ApiKey(key)) => request.header("Authorization", format!("ApiKey {key}")),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status >= 300 || answer["success"] != Value::Bool(true) {
        return Err(KibanaError::Refused {
            status,
            body: body.chars().take(500).collect(),
        });
    }
    Ok(answer["successCount"].as_u64().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn objects() -> Vec<Value> {
        SAVED_OBJECTS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("every line is a JSON object"))
            .collect()
    }

    #[test]
    fn every_reference_points_to_an_object_in_the_file() {
        let objects = objects();
        let known: HashSet<(String, String)> = objects
            .iter()
            .map(|o| {
                (
                    o["type"].as_str().unwrap().to_owned(),
                    o["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for object in &objects {
            for reference in object["references"].as_array().unwrap() {
                let target = (
                    reference["type"].as_str().unwrap().to_owned(),
                    reference["id"].as_str().unwrap().to_owned(),
                );
                assert!(
                    known.contains(&target),
                    "{} refers to missing {target:?}",
                    object["id"]
                );
            }
        }
    }

    /// Every saved object as Kibana 9.1 exports it: the core migration
    /// version Kibana has stamped since 8.8, each type's own migration
    /// version, and dashboard panels with their type and
    /// `<panelIndex>:panel_<panelIndex>` references.
    #[test]
    fn objects_are_what_kibana_9_exports() {
        for object in &objects() {
            let (kind, id) = (object["type"].as_str().unwrap(), &object["id"]);
            let type_version = match kind {
                "index-pattern" => "8.0.0",
                "visualization" => "8.5.0",
                "dashboard" => "10.3.0",
                other => panic!("{id}: unexpected type {other}"),
            };
            assert_eq!(object["coreMigrationVersion"], "8.8.0", "{id}");
            assert_eq!(object["typeMigrationVersion"], type_version, "{id}");
            if kind != "dashboard" {
                continue;
            }
            let references = object["references"].as_array().unwrap();
            let panels: Vec<Value> =
                serde_json::from_str(object["attributes"]["panelsJSON"].as_str().unwrap()).unwrap();
            assert!(!panels.is_empty());
            for panel in &panels {
                let index = panel["panelIndex"].as_str().unwrap();
                assert_eq!(panel["panelRefName"], format!("panel_{index}"), "{panel}");
                assert_eq!(panel["gridData"]["i"], index, "{panel}");
                let reference = references
                    .iter()
                    .find(|r| r["name"] == format!("{index}:panel_{index}"))
                    .unwrap_or_else(|| panic!("panel {index} has its reference"));
                assert_eq!(
                    panel["type"], reference["type"],
                    "panel {index} names its type"
                );
            }
        }
    }

    #[test]
    fn both_indices_have_a_data_view_and_every_visualization_uses_one() {
        let objects = objects();
        let titles: HashSet<&str> = objects
            .iter()
            .filter(|o| o["type"] == "index-pattern")
            .map(|o| o["attributes"]["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            HashSet::from(["orderdeck-orders", "orderdeck-metrics"])
        );
        let visualizations: Vec<&Value> = objects
            .iter()
            .filter(|o| o["type"] == "visualization")
            .collect();
        assert!(visualizations.len() >= 7);
        for visualization in visualizations {
            let uses_data_view = visualization["references"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["type"] == "index-pattern");
            assert!(uses_data_view, "{}", visualization["id"]);
            let state: Value =
                serde_json::from_str(visualization["attributes"]["visState"].as_str().unwrap())
                    .expect("visState is JSON");
            assert!(state["aggs"].is_array());
        }
        let dashboard = objects
            .iter()
            .find(|o| o["type"] == "dashboard")
            .expect("a dashboard");
        let panels: Value =
            serde_json::from_str(dashboard["attributes"]["panelsJSON"].as_str().unwrap()).unwrap();
        assert_eq!(
            panels.as_array().unwrap().len(),
            dashboard["references"].as_array().unwrap().len()
        );
    }
}
