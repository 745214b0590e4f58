//! Orders, their ids and the state machine they move through. Pure: no I/O.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifies an order everywhere: Kafka record key, event key, document id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = OrderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| OrderError::InvalidId(format!("{s:?} is not a UUID: {e}")))
    }
}

/// One run of an order through the state machine, named in each of its
/// events. A broker that writes a record twice (librdkafka's mock cluster
/// does not enforce the idempotent producer's sequence numbers) repeats a
/// run's event; an order run twice has two runs. Readers tell them apart.
/// Written as 16 hex digits: a JSON number that large loses digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RunId(u64);

impl RunId {
    pub fn new_random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for RunId {
    type Err = OrderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16)
            .map(Self)
            .map_err(|e| OrderError::InvalidId(format!("{s:?} is not a run id: {e}")))
    }
}

impl From<RunId> for String {
    fn from(run: RunId) -> Self {
        run.to_string()
    }
}

impl TryFrom<String> for RunId {
    type Error = OrderError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// An order as the original system sent it. The JSON keys are the wire
/// format and stay the original's (Spanish); the Rust names are English.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    #[serde(rename = "nombre_producto")]
    pub product: String,
    #[serde(rename = "precio")]
    pub price: f64,
    #[serde(rename = "pasarela_pago")]
    pub payment_gateway: String,
    #[serde(rename = "marca_tarjeta")]
    pub card_brand: String,
    #[serde(rename = "banco")]
    pub bank: String,
    pub region: String,
    #[serde(rename = "direccion")]
    pub address: String,
    #[serde(rename = "correo")]
    pub email: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OrderError {
    #[error("order is not valid JSON: {0}")]
    Json(String),
    #[error("field `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("order is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid order id: {0}")]
    InvalidId(String),
}

impl Order {
    /// Parses an order from the original JSON wire format and validates it.
    pub fn from_json(json: &str) -> Result<Self, OrderError> {
        let order: Order = serde_json::from_str(json).map_err(|e| {
            // serde's message already names the missing field or the bad type.
            OrderError::Json(e.to_string())
        })?;
        order.validate()?;
        Ok(order)
    }

    /// Checks what JSON types alone cannot: a usable price and no empty fields.
    pub fn validate(&self) -> Result<(), OrderError> {
        if !self.price.is_finite() {
            return Err(OrderError::Field {
                field: "precio",
                problem: format!("must be a finite number, got {}", self.price),
            });
        }
        if self.price < 0.0 {
            return Err(OrderError::Field {
                field: "precio",
                problem: format!("must not be negative, got {}", self.price),
            });
        }
        for (field, value) in [
            ("nombre_producto", &self.product),
            ("pasarela_pago", &self.payment_gateway),
            ("marca_tarjeta", &self.card_brand),
            ("banco", &self.bank),
            ("region", &self.region),
            ("direccion", &self.address),
            ("correo", &self.email),
        ] {
            if value.trim().is_empty() {
                return Err(OrderError::Field {
                    field,
                    problem: "must not be empty".to_owned(),
                });
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an Order always serializes")
    }
}

/// The Kafka record value: the original keys plus the id and the send time,
/// so the original Python consumer can still read the topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    #[serde(flatten)]
    pub order: Order,
    pub order_id: OrderId,
    /// Epoch seconds when the server accepted the order, as the original did.
    #[serde(rename = "timestamp_envio")]
    pub accepted_at: f64,
}

/// The stages every order passes through, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    Processing,
    Preparing,
    Shipped,
    Delivered,
    Finished,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Processing,
        State::Preparing,
        State::Shipped,
        State::Delivered,
        State::Finished,
    ];

    /// The states an order waits in; Finished is terminal.
    pub const TIMED: [State; 4] = [
        State::Processing,
        State::Preparing,
        State::Shipped,
        State::Delivered,
    ];

    pub fn next(self) -> Option<State> {
        match self {
            State::Processing => Some(State::Preparing),
            State::Preparing => Some(State::Shipped),
            State::Shipped => Some(State::Delivered),
            State::Delivered => Some(State::Finished),
            State::Finished => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Processing => "Processing",
            State::Preparing => "Preparing",
            State::Shipped => "Shipped",
            State::Delivered => "Delivered",
            State::Finished => "Finished",
        }
    }

    /// The original system's name for this state.
    pub fn spanish_name(self) -> &'static str {
        match self {
            State::Processing => "Procesando",
            State::Preparing => "Preparación",
            State::Shipped => "Enviado",
            State::Delivered => "Entregado",
            State::Finished => "Finalizado",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for State {
    type Err = String;

    /// Accepts the English names and the original Spanish ones, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_lowercase();
        State::ALL
            .into_iter()
            .find(|state| {
                let spanish = state.spanish_name().to_lowercase();
                wanted == state.name().to_lowercase()
                    || wanted == spanish
                    || wanted == spanish.replace('ó', "o")
            })
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?}; expected one of Processing, Preparing, Shipped, \
                     Delivered, Finished (or Procesando, Preparación, Enviado, Entregado, Finalizado)"
                )
            })
    }
}

/// One step of an order through the state machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub order_id: OrderId,
    /// None when the order enters the machine.
    pub from: Option<State>,
    pub to: State,
    /// The original's name for `to`, so the events read as the original's did.
    pub estado: String,
    pub at_unix_ms: i64,
    /// Time spent in `from`.
    pub previous_state_ms: f64,
    pub product: String,
    pub region: String,
    /// The whole order, so a reader of the events topic (a watcher, the
    /// Elasticsearch mirror) needs no other lookup. Optional for events
    /// written by older versions, which carried it on Processing only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// When the order was acknowledged (epoch seconds), with the order.
    #[serde(
        rename = "timestamp_envio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub accepted_at: Option<f64>,
    /// The process that drove it (`host:pid`), so any reader of the events
    /// topic knows where each order ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Which of that process's consumers ran it (`c2`): with `by`, the
    /// member of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The run that wrote it: a repeated record carries the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
}

impl Transition {
    pub fn new(
        record: &OrderRecord,
        from: Option<State>,
        to: State,
        previous_state: Duration,
    ) -> Self {
        Self {
            order_id: record.order_id,
            from,
            to,
            estado: to.spanish_name().to_owned(),
            at_unix_ms: crate::clock::unix_millis_now(),
            previous_state_ms: previous_state.as_secs_f64() * 1e3,
            product: record.order.product.clone(),
            region: record.order.region.clone(),
            order: Some(record.order.clone()),
            accepted_at: Some(record.accepted_at),
            by: None,
            member: None,
            run: None,
        }
    }

    /// The order as it was acknowledged, when the event carries it.
    pub fn record(&self) -> Option<OrderRecord> {
        Some(OrderRecord {
            order: self.order.clone()?,
            order_id: self.order_id,
            accepted_at: self.accepted_at?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_json() -> &'static str {
        r#"{"nombre_producto":"Cámara","precio":1921.15,"pasarela_pago":"Authorize.net",
            "marca_tarjeta":"Discover","banco":"Banco del Pueblo","region":"África",
            "direccion":"901 Vía Antigua","correo":"user2382@dominio.com"}"#
    }

    #[test]
    fn parses_the_original_json() {
        let order = Order::from_json(sample_json()).unwrap();
        assert_eq!(order.product, "Cámara");
        assert_eq!(order.price, 1921.15);
        assert_eq!(Order::from_json(&order.to_json()).unwrap(), order);
    }

    #[test]
    fn names_the_missing_field() {
        let err = Order::from_json(r#"{"nombre_producto":"x","precio":1}"#).unwrap_err();
        assert!(err.to_string().contains("pasarela_pago"), "{err}");
    }

    #[test]
    fn rejects_negative_and_string_prices() {
        let negative = sample_json().replace("1921.15", "-1");
        let err = Order::from_json(&negative).unwrap_err();
        assert!(err.to_string().contains("precio"), "{err}");
        let text = sample_json().replace("1921.15", "\"cheap\"");
        assert!(matches!(Order::from_json(&text), Err(OrderError::Json(_))));
    }

    #[test]
    fn rejects_empty_fields() {
        let empty = sample_json().replace("Discover", " ");
        let err = Order::from_json(&empty).unwrap_err();
        assert_eq!(err.to_string(), "field `marca_tarjeta` must not be empty");
    }

    #[test]
    fn record_keeps_the_original_keys() {
        let record = OrderRecord {
            order: Order::from_json(sample_json()).unwrap(),
            order_id: OrderId::new_random(),
            accepted_at: 1.5,
        };
        let value: serde_json::Value = serde_json::to_value(&record).unwrap();
        for key in [
            "nombre_producto",
            "precio",
            "pasarela_pago",
            "marca_tarjeta",
            "banco",
            "region",
            "direccion",
            "correo",
            "order_id",
            "timestamp_envio",
        ] {
            assert!(value.get(key).is_some(), "missing {key} in {value}");
        }
    }

    #[test]
    fn a_run_id_is_written_as_hex_and_older_events_have_none() {
        let record = OrderRecord {
            order: Order::from_json(sample_json()).unwrap(),
            order_id: OrderId::new_random(),
            accepted_at: 1.5,
        };
        let mut transition = Transition::new(&record, None, State::Processing, Duration::ZERO);
        let older = serde_json::to_value(&transition).unwrap();
        assert!(older.get("run").is_none(), "{older}");
        let read: Transition = serde_json::from_value(older).unwrap();
        assert_eq!(read.run, None);

        transition.run = Some(RunId(u64::MAX - 1));
        let value = serde_json::to_value(&transition).unwrap();
        assert_eq!(value["run"], "fffffffffffffffe");
        let read: Transition = serde_json::from_value(value).unwrap();
        assert_eq!(read.run, transition.run);
        assert!("not hex".parse::<RunId>().is_err());
    }

    #[test]
    fn states_walk_in_order_and_end() {
        let mut walked = vec![State::Processing];
        while let Some(next) = walked.last().unwrap().next() {
            walked.push(next);
        }
        assert_eq!(walked, State::ALL);
    }

    #[test]
    fn states_parse_in_both_languages() {
        assert_eq!("Preparación".parse::<State>(), Ok(State::Preparing));
        assert_eq!("preparacion".parse::<State>(), Ok(State::Preparing));
        assert_eq!("ENTREGADO".parse::<State>(), Ok(State::Delivered));
        assert_eq!("shipped".parse::<State>(), Ok(State::Shipped));
        assert!("lost".parse::<State>().is_err());
    }
}
