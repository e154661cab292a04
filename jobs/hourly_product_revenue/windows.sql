-- Per (window, product): units and revenue from the events of the window. `events` holds the
-- parsed Kafka messages (docs/streaming.md); hop() gives the starts of the 1-hour windows,
-- every 15 minutes, that hold each event.
SELECT
    window_start,
    window_start + INTERVAL '1 hour' AS window_end,
    product_id,
    SUM(CASE WHEN transaction_type = 'SALE' THEN quantity ELSE 0 END) AS units_sold,
    SUM(CASE WHEN transaction_type = 'RETURN' THEN quantity ELSE 0 END) AS units_returned,
    SUM(CASE WHEN transaction_type = 'SALE' THEN CAST(quantity AS DECIMAL(18, 0)) * unit_price ELSE 0 END) AS gross_revenue,
    SUM(CASE WHEN transaction_type = 'RETURN' THEN CAST(quantity AS DECIMAL(18, 0)) * unit_price ELSE 0 END) AS returns_value,
    SUM(CASE WHEN transaction_type = 'SALE' THEN 1 ELSE -1 END * CAST(quantity AS DECIMAL(18, 0)) * unit_price) AS net_revenue,
    COUNT(*) AS events,
    to_char(window_start, '%Y-%m-%d') AS window_date,
    to_char(window_start, '%H') AS window_hour
FROM (
    SELECT unnest(hop(event_time, '1 hour', '15 minutes')) AS window_start, *
    FROM events
)
GROUP BY window_start, product_id
