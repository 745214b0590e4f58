//! Any bytes as an orders CSV file: reading never panics, every order read
//! is valid, and every refused row is located by a line number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderdeck::clients::{read_orders, BadRowPolicy, CsvError};

fuzz_target!(|data: &[u8]| {
    match read_orders(data, "fuzz.csv", BadRowPolicy::Skip) {
        Ok(loaded) => {
            assert!(!loaded.orders.is_empty());
            for order in &loaded.orders {
                assert!(order.validate().is_ok(), "read an invalid order: {order:?}");
            }
            for row in &loaded.rejected {
                assert!(row.line >= 2, "a data row is below the header: {row}");
            }
        }
        Err(CsvError::Row(_)) => panic!("Skip never stops at a row"),
        Err(_) => {}
    }
});
