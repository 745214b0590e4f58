//! The original system's `orders.OrderService/SendMessage`, unchanged on the wire.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    pb::orders::{order_service_server::OrderService, MessageRequest, MessageResponse},
    Ingest,
};
use crate::order::Order;

pub struct LegacyService {
    ingest: Arc<Ingest>,
}

impl LegacyService {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        Self { ingest }
    }
}

#[tonic::async_trait]
impl OrderService for LegacyService {
    async fn send_message(
        &self,
        request: Request<MessageRequest>,
    ) -> Result<Response<MessageResponse>, Status> {
        let json = request.into_inner().message;
        self.ingest.check_size(json.len())?;
        let order = Order::from_json(&json).map_err(|e| self.ingest.reject(e))?;
        let accepted = self.ingest.accept(order, None).await?;
        // The original answered with free text; a JSON line is still text and
        // also gives a program the id to follow the order with.
        let response = serde_json::json!({
            "status": "accepted",
            "order_id": accepted.order_id,
            "partition": accepted.delivered.partition,
            "offset": accepted.delivered.offset,
        })
        .to_string();
        Ok(Response::new(MessageResponse { response }))
    }
}
