//! orderdeck's typed API: `PlaceOrder` and `WatchTransitions`.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    pb::v1::{self, orders_server::Orders, PlaceOrderRequest, PlaceOrderResponse, WatchRequest},
    Ingest,
};
use crate::order::{Order, OrderError, OrderId, State, Transition};

pub struct TypedService {
    ingest: Arc<Ingest>,
    transitions: broadcast::Sender<Transition>,
    /// Cancelled when the server stops: open watch streams end then.
    closing: CancellationToken,
}

impl TypedService {
    pub fn new(
        ingest: Arc<Ingest>,
        transitions: broadcast::Sender<Transition>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            ingest,
            transitions,
            closing,
        }
    }
}

impl From<v1::Order> for Order {
    fn from(o: v1::Order) -> Self {
        Order {
            product: o.product,
            price: o.price,
            payment_gateway: o.payment_gateway,
            card_brand: o.card_brand,
            bank: o.bank,
            region: o.region,
            address: o.address,
            email: o.email,
        }
    }
}

impl From<&Order> for v1::Order {
    fn from(o: &Order) -> Self {
        v1::Order {
            product: o.product.clone(),
            price: o.price,
            payment_gateway: o.payment_gateway.clone(),
            card_brand: o.card_brand.clone(),
            bank: o.bank.clone(),
            region: o.region.clone(),
            address: o.address.clone(),
            email: o.email.clone(),
        }
    }
}

fn wire_state(state: Option<State>) -> v1::State {
    match state {
        None => v1::State::Unspecified,
        Some(State::Processing) => v1::State::Processing,
        Some(State::Preparing) => v1::State::Preparing,
        Some(State::Shipped) => v1::State::Shipped,
        Some(State::Delivered) => v1::State::Delivered,
        Some(State::Finished) => v1::State::Finished,
    }
}

impl From<Transition> for v1::Transition {
    fn from(t: Transition) -> Self {
        v1::Transition {
            order_id: t.order_id.to_string(),
            from_state: wire_state(t.from).into(),
            to_state: wire_state(Some(t.to)).into(),
            at_unix_ms: t.at_unix_ms,
            previous_state_ms: t.previous_state_ms,
            product: t.product,
            region: t.region,
        }
    }
}

/// Transitions queued per watcher before it falls behind.
const WATCH_BUFFER: usize = 256;

type TransitionStream = Pin<Box<dyn Stream<Item = Result<v1::Transition, Status>> + Send>>;

#[tonic::async_trait]
impl Orders for TypedService {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let request = request.into_inner();
        self.ingest
            .check_size(prost::Message::encoded_len(&request))?;
        let order: Order = request
            .order
            .ok_or_else(|| {
                self.ingest.reject(OrderError::Field {
                    field: "order",
                    problem: "is required".to_owned(),
                })
            })?
            .into();
        order.validate().map_err(|e| self.ingest.reject(e))?;
        let order_id = match request.order_id.as_str() {
            "" => None,
            id => Some(id.parse::<OrderId>().map_err(|e| self.ingest.reject(e))?),
        };
        let accepted = self.ingest.accept(order, order_id).await?;
        Ok(Response::new(PlaceOrderResponse {
            order_id: accepted.order_id.to_string(),
            partition: accepted.delivered.partition,
            offset: accepted.delivered.offset,
        }))
    }

    type WatchTransitionsStream = TransitionStream;

    async fn watch_transitions(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchTransitionsStream>, Status> {
        let wanted = match request.into_inner().order_id.as_str() {
            "" => None,
            id => Some(
                id.parse::<OrderId>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let mut live = self.transitions.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let closing = self.closing.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return, // the watcher went away
                    _ = closing.cancelled() => {
                        let _ = tx.try_send(Err(Status::unavailable(
                            "the server is shutting down; watch again after it restarts",
                        )));
                        return;
                    }
                    next = live.recv() => next,
                };
                let (item, last) = match next {
                    Ok(t) if wanted.is_some_and(|id| id != t.order_id) => continue,
                    // One order's stream ends with its Finished transition.
                    Ok(t) => (
                        Ok(v1::Transition::from(t.clone())),
                        wanted.is_some() && t.to == State::Finished,
                    ),
                    Err(broadcast::error::RecvError::Lagged(missed)) => (
                        Err(Status::data_loss(format!(
                            "this watcher fell {missed} transitions behind and missed them"
                        ))),
                        true,
                    ),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        let stream = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}
