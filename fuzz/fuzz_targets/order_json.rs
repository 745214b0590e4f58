//! Any bytes as an order's JSON (what `SendMessage` receives): parsing never
//! panics, an accepted order is valid, and it survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderdeck::order::Order;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(order) = Order::from_json(text) {
        assert!(order.validate().is_ok(), "accepted an invalid order: {order:?}");
        let again = Order::from_json(&order.to_json()).expect("our own JSON parses");
        assert_eq!(again, order);
    }
});
