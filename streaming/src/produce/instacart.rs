//! Instacart order lines as events (`ember produce --instacart DIR`), for the seed pipeline
//! that streams purchases by product, department and hour (`jobs/instacart_trends`).
//!
//! `DIR` holds `orders.csv` and `order_products__prior.csv` (each may be `.csv.gz`), in the
//! layout of "The Instacart Online Grocery Shopping Dataset 2017" (`data/instacart/` has a
//! sample). Each line of `order_products__prior` joined to its order is one event:
//!
//! | field | type | from |
//! |---|---|---|
//! | `event_time` | RFC 3339, UTC | see below |
//! | `order_id` | int | `order_id` |
//! | `user_id` | int | the order's `user_id` |
//! | `product_id` | int | `product_id` |
//! | `add_to_cart_order` | int | `add_to_cart_order` |
//! | `reordered` | int (0, 1) | `reordered` |
//!
//! The dataset has no timestamps, only the day of week and the hour of each order. The event
//! time is [`START`] (Sunday 2017-01-01T00:00Z; `order_dow` 0 is taken as Sunday) plus
//! `order_dow` days, `order_hour_of_day` hours and `order_id mod 60` minutes (to spread an hour's
//! orders over it): one week of event time. Events are produced in event-time order (then order
//! id, then cart position), keyed by the order id, so an order's lines stay in one partition.
//! Orders with no line item (`train`, `test`) give no event; a line whose order is missing
//! or whose fields are not whole numbers is an error naming the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::io;
use crate::error::Result;

/// Sunday 2017-01-01T00:00:00Z, s since the epoch: the event time of `order_dow` 0, hour 0.
pub const START: i64 = 1_483_228_800;

/// `dir/name.csv`, or `dir/name.csv.gz` when only that exists.
fn file(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(format!("{name}.csv"));
    let gz = dir.join(format!("{name}.csv.gz"));
    match (plain.is_file(), gz.is_file()) {
        (true, _) => Ok(plain),
        (false, true) => Ok(gz),
        (false, false) => Err(io(&plain, "no such file (nor .csv.gz)")),
    }
}

/// The rows of a CSV file with a header, as (line number, fields by header name).
fn rows(path: &Path) -> Result<Vec<(usize, HashMap<String, String>)>> {
    let mut csv = csv::Reader::from_reader(super::open(path)?);
    let headers = csv.headers().map_err(|e| io(path, e))?.clone();
    csv.records()
        .enumerate()
        .map(|(i, r)| {
            let r = r.map_err(|e| io(path, format!("line {}: {e}", i + 2)))?;
            let row = headers
                .iter()
                .map(str::to_string)
                .zip(r.iter().map(|v| v.trim().to_string()))
                .collect();
            Ok((i + 2, row))
        })
        .collect()
}

fn number(path: &Path, line: usize, row: &HashMap<String, String>, name: &str) -> Result<i64> {
    let text = row.get(name).map(String::as_str).unwrap_or("");
    text.parse().map_err(|_| {
        io(
            path,
            format!("line {line}: {name} = \"{text}\" is not a whole number"),
        )
    })
}

/// The events of the order lines in `dir`, in the order they are produced: (key, JSON).
///
/// # Errors
/// [`ember_core::Error::Storage`] naming the file and line: a missing or unreadable file, a
/// field that is not a whole number, a line whose order is not in `orders`.
pub fn events(dir: &Path) -> Result<Vec<(String, String)>> {
    let orders_path = file(dir, "orders")?;
    let mut orders: HashMap<i64, (i64, i64)> = HashMap::new();
    for (line, row) in rows(&orders_path)? {
        let id = number(&orders_path, line, &row, "order_id")?;
        let user = number(&orders_path, line, &row, "user_id")?;
        let dow = number(&orders_path, line, &row, "order_dow")?;
        let hour = number(&orders_path, line, &row, "order_hour_of_day")?;
        let time = START + dow * 86_400 + hour * 3_600 + id.rem_euclid(60) * 60;
        orders.insert(id, (user, time));
    }
    let lines_path = file(dir, "order_products__prior")?;
    let mut events: Vec<(i64, i64, i64, String)> = Vec::new();
    for (line, row) in rows(&lines_path)? {
        let order = number(&lines_path, line, &row, "order_id")?;
        let product = number(&lines_path, line, &row, "product_id")?;
        let position = number(&lines_path, line, &row, "add_to_cart_order")?;
        let reordered = number(&lines_path, line, &row, "reordered")?;
        let Some(&(user, time)) = orders.get(&order) else {
            return Err(io(
                &lines_path,
                format!(
                    "line {line}: order {order} is not in {}",
                    orders_path.display()
                ),
            ));
        };
        let event_time = chrono::DateTime::from_timestamp(time, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let json = serde_json::json!({
            "event_time": event_time,
            "order_id": order,
            "user_id": user,
            "product_id": product,
            "add_to_cart_order": position,
            "reordered": reordered,
        });
        events.push((time, order, position, json.to_string()));
    }
    events.sort_by_key(|&(time, order, position, _)| (time, order, position));
    Ok(events
        .into_iter()
        .map(|(_, order, _, json)| (order.to_string(), json))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_lines_become_events_in_event_time_order() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("orders.csv"),
            "\"order_id\",\"user_id\",\"eval_set\",\"order_number\",\"order_dow\",\"order_hour_of_day\",\"days_since_prior_order\"\n\
             61,7,\"prior\",2,1,\"09\",6\n\
             2,8,\"prior\",1,0,\"23\",NA\n\
             3,9,\"train\",1,0,\"01\",NA\n",
        )
        .expect("orders");
        std::fs::write(
            dir.path().join("order_products__prior.csv"),
            "\"order_id\",\"product_id\",\"add_to_cart_order\",\"reordered\"\n61,100,2,1\n61,200,1,0\n2,300,1,0\n",
        )
        .expect("lines");
        let produced = events(dir.path()).expect("events");
        let keys: Vec<&str> = produced.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["2", "61", "61"]);
        let first: serde_json::Value = serde_json::from_str(&produced[0].1).expect("json");
        // Sunday 23:02 (order 2: minute 2).
        assert_eq!(first["event_time"], "2017-01-01T23:02:00Z");
        let second: serde_json::Value = serde_json::from_str(&produced[1].1).expect("json");
        // Monday 09:01 (order 61: minute 1), cart position 1 first.
        assert_eq!(second["event_time"], "2017-01-02T09:01:00Z");
        assert_eq!(second["product_id"], 200);
        assert_eq!(second["user_id"], 7);
        std::fs::write(
            dir.path().join("order_products__prior.csv"),
            "order_id,product_id,add_to_cart_order,reordered\n5,1,1,0\n",
        )
        .expect("lines");
        let e = events(dir.path()).expect_err("unknown order").to_string();
        assert!(e.contains("line 2: order 5 is not in"), "{e}");
    }

    #[test]
    fn the_shipped_sample_gives_one_event_per_order_line() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/instacart");
        assert_eq!(events(&dir).expect("events").len(), 32_290);
    }
}
