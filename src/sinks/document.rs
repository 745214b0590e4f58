//! What goes to Elasticsearch: one document per order (its latest state) and
//! one per metric, each with an id derived from the order id so that a retry
//! or a replay overwrites instead of duplicating. Order documents carry their
//! state as an external version, so an older state sent late (a replay, a
//! hand-over, an export of an old run) never overwrites a newer one.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    clock::unix_millis_now,
    order::{OrderId, OrderRecord, State, Transition},
};

/// A metrics-topic record that is not a document.
#[derive(Debug, thiserror::Error)]
#[error("not a metric document: {0}")]
pub struct NotADocument(#[from] serde_json::Error);

/// The two indices, by role; names are configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexNames {
    pub orders: String,
    pub metrics: String,
}

impl Default for IndexNames {
    fn default() -> Self {
        Self {
            orders: "orderdeck-orders".to_owned(),
            metrics: "orderdeck-metrics".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    Orders,
    Metrics,
}

/// The original system's metric kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    SendTime,
    EndToEndLatency,
    StateTransition,
    TimeInState,
    Throughput,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::SendTime => "send_time",
            MetricKind::EndToEndLatency => "end_to_end_latency",
            MetricKind::StateTransition => "state_transition",
            MetricKind::TimeInState => "time_in_state",
            MetricKind::Throughput => "throughput",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub index: IndexKind,
    pub id: String,
    /// Elasticsearch's external version: a lower one never replaces a higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub source: Value,
}

impl Document {
    /// The two lines of a `_bulk` index operation.
    pub fn bulk_lines(&self, names: &IndexNames) -> String {
        let index = match self.index {
            IndexKind::Orders => &names.orders,
            IndexKind::Metrics => &names.metrics,
        };
        let action = match self.version {
            Some(version) => json!({ "index": {
                "_index": index, "_id": self.id,
                "version": version, "version_type": "external",
            } }),
            None => json!({ "index": { "_index": index, "_id": self.id } }),
        };
        format!("{action}\n{}\n", self.source)
    }

    /// The document as a metrics-topic record.
    pub fn to_record(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a document serializes")
    }

    pub fn from_record(bytes: &[u8]) -> Result<Self, NotADocument> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Everything one events-topic record stands for: the order's new
    /// state, the transition's metrics and, on entering Processing, the
    /// end-to-end latency (acknowledged → taken up). An event without the
    /// order (written by an older version) yields its metrics only.
    pub fn from_event(transition: &Transition) -> Vec<Self> {
        let Some(record) = transition.record() else {
            return Self::transition_metrics(transition);
        };
        let mut documents = Self::for_transition(&record, transition);
        if transition.from.is_none() {
            let accepted_ms = record.accepted_at * 1e3;
            documents.push(Self::metric(
                MetricKind::EndToEndLatency,
                Some(record.order_id),
                None,
                (transition.at_unix_ms as f64 - accepted_ms).max(0.0),
                "ms",
                transition.at_unix_ms,
            ));
        }
        documents
    }

    /// A metric of one order (or of the pipeline when `order` is None).
    pub fn metric(
        kind: MetricKind,
        order: Option<OrderId>,
        state: Option<State>,
        value: f64,
        unit: &str,
        at_unix_ms: i64,
    ) -> Self {
        let id = match (order, state) {
            (Some(order), Some(state)) => format!("{order}:{}:{}", kind.name(), state.name()),
            (Some(order), None) => format!("{order}:{}", kind.name()),
            (None, _) => format!("{}:{at_unix_ms}", kind.name()),
        };
        Self {
            index: IndexKind::Metrics,
            id,
            version: None,
            source: json!({
                "@timestamp": at_unix_ms,
                "kind": kind,
                "value": value,
                "unit": unit,
                "order_id": order,
                "state": state.map(State::name),
            }),
        }
    }

    /// The order with its latest state, overwritten as it moves.
    pub fn order(record: &OrderRecord, state: State, at_unix_ms: i64) -> Self {
        let mut source = serde_json::to_value(record).expect("an order record serializes");
        source["state"] = json!(state.name());
        source["estado"] = json!(state.spanish_name());
        source["@timestamp"] = json!(at_unix_ms);
        source["accepted_at"] = json!((record.accepted_at * 1e3) as i64);
        Self {
            index: IndexKind::Orders,
            id: record.order_id.to_string(),
            version: Some(state.index() as u64 + 1),
            source,
        }
    }

    /// What one transition adds: the order's new state, the transition, and
    /// the time spent in the state it left.
    pub fn for_transition(record: &OrderRecord, transition: &Transition) -> Vec<Self> {
        let mut documents = vec![Self::order(record, transition.to, transition.at_unix_ms)];
        documents.extend(Self::transition_metrics(transition));
        documents
    }

    fn transition_metrics(transition: &Transition) -> Vec<Self> {
        let at = transition.at_unix_ms;
        let mut documents = vec![Self::metric(
            MetricKind::StateTransition,
            Some(transition.order_id),
            Some(transition.to),
            transition.previous_state_ms,
            "ms",
            at,
        )];
        if let Some(from) = transition.from {
            documents.push(Self::metric(
                MetricKind::TimeInState,
                Some(transition.order_id),
                Some(from),
                transition.previous_state_ms,
                "ms",
                at,
            ));
        }
        documents
    }

    pub fn throughput(orders_per_s: f64) -> Self {
        Self::metric(
            MetricKind::Throughput,
            None,
            None,
            orders_per_s,
            "orders/s",
            unix_millis_now(),
        )
    }
}

/// Index templates with explicit mappings, created at start-up.
pub fn index_templates(names: &IndexNames) -> [(String, Value); 2] {
    let keyword = json!({ "type": "keyword" });
    let text_and_keyword = json!({ "type": "text", "fields": { "raw": { "type": "keyword" } } });
    let orders = json!({
        "index_patterns": [names.orders],
        "template": { "mappings": { "properties": {
            "@timestamp": { "type": "date", "format": "epoch_millis" },
            "accepted_at": { "type": "date", "format": "epoch_millis" },
            "order_id": keyword, "state": keyword, "estado": keyword,
            "nombre_producto": text_and_keyword, "precio": { "type": "double" },
            "pasarela_pago": keyword, "marca_tarjeta": keyword, "banco": keyword,
            "region": keyword, "direccion": text_and_keyword, "correo": keyword,
            "timestamp_envio": { "type": "double" }
        } } }
    });
    let metrics = json!({
        "index_patterns": [names.metrics],
        "template": { "mappings": { "properties": {
            "@timestamp": { "type": "date", "format": "epoch_millis" },
            "kind": keyword, "value": { "type": "double" }, "unit": keyword,
            "order_id": keyword, "state": keyword
        } } }
    });
    [
        (names.orders.clone(), orders),
        (names.metrics.clone(), metrics),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Order;

    fn record() -> OrderRecord {
        OrderRecord {
            order: Order {
                product: "Cámara".into(),
                price: 10.0,
                payment_gateway: "PayPal".into(),
                card_brand: "Visa".into(),
                bank: "B".into(),
                region: "Europa".into(),
                address: "1 Calle".into(),
                email: "a@b.c".into(),
            },
            order_id: OrderId::new_random(),
            accepted_at: 1.5,
        }
    }

    #[test]
    fn ids_are_stable_per_order_kind_and_state() {
        let r = record();
        let t = Transition::new(
            &r,
            Some(State::Processing),
            State::Preparing,
            std::time::Duration::from_millis(5),
        );
        let first = Document::for_transition(&r, &t);
        let again = Document::for_transition(&r, &t);
        let ids: Vec<_> = first.iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids, again.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
        assert_eq!(ids[0], r.order_id.to_string());
        assert_eq!(ids[1], format!("{}:state_transition:Preparing", r.order_id));
        assert_eq!(ids[2], format!("{}:time_in_state:Processing", r.order_id));
    }

    #[test]
    fn an_event_stands_for_its_documents_and_later_states_win() {
        let r = record();
        let entry = Transition::new(&r, None, State::Processing, std::time::Duration::ZERO);
        let entered = Document::from_event(&entry);
        let kinds: Vec<_> = entered.iter().map(|d| d.id.clone()).collect();
        assert_eq!(
            kinds,
            [
                r.order_id.to_string(),
                format!("{}:state_transition:Processing", r.order_id),
                format!("{}:end_to_end_latency", r.order_id),
            ]
        );
        let done = Transition::new(
            &r,
            Some(State::Delivered),
            State::Finished,
            Default::default(),
        );
        let finished = &Document::from_event(&done)[0];
        assert!(
            finished.version > entered[0].version,
            "Finished outranks Processing"
        );
        let action: Value = serde_json::from_str(
            finished
                .bulk_lines(&IndexNames::default())
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(action["index"]["version_type"], "external");
        assert_eq!(action["index"]["version"], 5);
        let metric = &entered[1];
        assert_eq!(Document::from_record(&metric.to_record()).unwrap(), *metric);
        assert!(Document::from_record(b"{}").is_err());
    }

    #[test]
    fn bulk_lines_are_an_action_and_a_source() {
        let doc = Document::metric(MetricKind::SendTime, None, None, 2.0, "ms", 7);
        let lines = doc.bulk_lines(&IndexNames::default());
        let parsed: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed[0]["index"]["_index"], "orderdeck-metrics");
        assert_eq!(parsed[0]["index"]["_id"], "send_time:7");
        assert_eq!(parsed[1]["kind"], "send_time");
        assert_eq!(parsed[1]["value"], 2.0);
    }
}
