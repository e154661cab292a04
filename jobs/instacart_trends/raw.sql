-- Every order line as it arrived (a stateless query: each micro-batch's rows are appended at
-- once), partitioned by the event's date and hour, as Flume's Kafka → HDFS archive.
SELECT
    event_time,
    order_id,
    user_id,
    product_id,
    add_to_cart_order,
    reordered,
    to_char(event_time, '%Y-%m-%d') AS event_date,
    to_char(event_time, '%H') AS event_hour
FROM events
