//! The orders file: the original's CSV, read with every bad row named by
//! file and line.

use std::path::Path;

use crate::order::Order;

/// The original data set's header, in order.
pub const CSV_HEADER: [&str; 8] = [
    "NombreProducto",
    "Precio",
    "PasarelaPago",
    "MarcaTarjeta",
    "Banco",
    "Region",
    "Direccion",
    "Correo",
];

/// A row that could not become an order, located for a person to fix.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RowError {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read orders from {file}: {source}")]
    Open { file: String, source: csv::Error },
    #[error("{file}: header must be {expected}, found {found}")]
    Header {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Row(RowError),
    #[error("{file} has no valid orders")]
    Empty { file: String },
}

/// What to do with a malformed row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadRowPolicy {
    /// Report it, count it as rejected, go on.
    Skip,
    /// Stop with its file and line.
    Stop,
}

#[derive(Debug)]
pub struct CsvOrders {
    pub orders: Vec<Order>,
    pub rejected: Vec<RowError>,
}

/// Reads every row of `path` into orders; bad rows are located by line.
/// The original system's 500 orders, built in: the orders when no file is
/// given, so the binary works from any directory.
pub const BUILT_IN_ORDERS: &str = include_str!("../../orders.csv");

/// The orders of `path`, or the built-in ones when there is none.
pub fn orders_from(path: Option<&Path>, policy: BadRowPolicy) -> Result<CsvOrders, CsvError> {
    match path {
        Some(path) => load_orders(path, policy),
        None => read_orders(BUILT_IN_ORDERS.as_bytes(), "built-in orders", policy),
    }
}

pub fn load_orders(path: &Path, policy: BadRowPolicy) -> Result<CsvOrders, CsvError> {
    let file = path.display().to_string();
    let opened = std::fs::File::open(path).map_err(|error| CsvError::Open {
        file: file.clone(),
        source: error.into(),
    })?;
    read_orders(opened, &file, policy)
}

/// Reads CSV text into orders; `file` names it in errors.
pub fn read_orders(
    input: impl std::io::Read,
    file: &str,
    policy: BadRowPolicy,
) -> Result<CsvOrders, CsvError> {
    let file = file.to_owned();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader
        .headers()
        .map_err(|source| CsvError::Open {
            file: file.clone(),
            source,
        })?
        .clone();
    if header.iter().map(str::trim).ne(CSV_HEADER) {
        return Err(CsvError::Header {
            file,
            expected: CSV_HEADER.join(","),
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut loaded = CsvOrders {
        orders: Vec::new(),
        rejected: Vec::new(),
    };
    for record in reader.records() {
        let row = match record {
            Ok(record) => {
                let line = record.position().map_or(0, csv::Position::line);
                parse_row(&record).map_err(|reason| RowError {
                    file: file.clone(),
                    line,
                    reason,
                })
            }
            Err(error) => Err(RowError {
                file: file.clone(),
                line: error.position().map_or(0, csv::Position::line),
                reason: error.to_string(),
            }),
        };
        match row {
            Ok(order) => loaded.orders.push(order),
            Err(error) if policy == BadRowPolicy::Stop => return Err(CsvError::Row(error)),
            Err(error) => {
                tracing::warn!(%error, "skipping a malformed CSV row");
                loaded.rejected.push(error);
            }
        }
    }
    if loaded.orders.is_empty() {
        return Err(CsvError::Empty { file });
    }
    Ok(loaded)
}

fn parse_row(record: &csv::StringRecord) -> Result<Order, String> {
    if record.len() != CSV_HEADER.len() {
        return Err(format!(
            "expected {} fields ({}), found {}",
            CSV_HEADER.len(),
            CSV_HEADER.join(","),
            record.len()
        ));
    }
    let field = |i: usize| record[i].trim().to_owned();
    let price = record[1].trim().parse::<f64>().map_err(|_| {
        format!(
            "Precio {:?} is not a number (use a dot for decimals, e.g. 19.99)",
            &record[1]
        )
    })?;
    let order = Order {
        product: field(0),
        price,
        payment_gateway: field(2),
        card_brand: field(3),
        bank: field(4),
        region: field(5),
        address: field(6),
        email: field(7),
    };
    order.validate().map_err(|e| e.to_string())?;
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_csv(body: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, body.as_bytes()).unwrap();
        file
    }

    const HEADER: &str =
        "NombreProducto,Precio,PasarelaPago,MarcaTarjeta,Banco,Region,Direccion,Correo\n";
    const GOOD: &str = "Cámara,10.5,PayPal,Visa,Banco X,Europa,1 Calle,a@b.c\n";

    #[test]
    fn reads_the_shipped_data_set() {
        let loaded = load_orders(Path::new("orders.csv"), BadRowPolicy::Stop).unwrap();
        assert_eq!(loaded.orders.len(), 500);
        assert!(loaded.rejected.is_empty());
        let built_in = orders_from(None, BadRowPolicy::Stop).unwrap();
        assert_eq!(built_in.orders, loaded.orders);
    }

    #[test]
    fn a_bad_price_names_file_and_line() {
        let file = write_csv(&format!(
            "{HEADER}{GOOD}{GOOD}Reloj,abc,PayPal,Visa,B,R,D,c@d.e\n"
        ));
        let err = load_orders(file.path(), BadRowPolicy::Stop).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}:4: ", file.path().display())),
            "{text}"
        );
        assert!(text.contains("\"abc\" is not a number"), "{text}");
    }

    #[test]
    fn skipping_counts_the_bad_rows() {
        let file = write_csv(&format!(
            "{HEADER}{GOOD}too,few,fields\n{GOOD}Reloj,-3,PayPal,Visa,B,R,D,c@d.e\n"
        ));
        let loaded = load_orders(file.path(), BadRowPolicy::Skip).unwrap();
        assert_eq!(loaded.orders.len(), 2);
        let lines: Vec<u64> = loaded.rejected.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 5]);
        assert!(loaded.rejected[0].reason.contains("expected 8 fields"));
        assert!(loaded.rejected[1].reason.contains("precio"));
    }

    #[test]
    fn a_wrong_header_is_refused() {
        let file = write_csv("product,price\nx,1\n");
        let err = load_orders(file.path(), BadRowPolicy::Skip).unwrap_err();
        assert!(
            err.to_string()
                .contains("header must be NombreProducto,Precio"),
            "{err}"
        );
    }
}
