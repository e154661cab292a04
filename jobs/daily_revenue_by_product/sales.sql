-- Valid rows in Ember's canonical sales schema:
--   order_id Utf8, order_ts Timestamp(µs), order_date Date32, product_id Utf8,
--   quantity Int64 (negative = return), unit_price Decimal(18,4), customer_id Utf8 (nullable),
--   country Utf8, product_name Utf8, category Utf8.
-- product_name and category come from the products dimension when one is given (LEFT JOIN: a
-- product missing from the dimension keeps its row); without it, product_name is the row's
-- Description and category is NULL.
SELECT
    s.order_id,
    s.order_ts,
    CAST(s.order_ts AS DATE)                 AS order_date,
    s.product_id,
    s.quantity,
    s.unit_price,
    s.customer_id,
    s.country,
    COALESCE(NULLIF(trim(p.product_name), ''), s.description) AS product_name,
    NULLIF(trim(p.category), '')             AS category
FROM checked_sales s
LEFT JOIN products p ON trim(p.product_id) = s.product_id
WHERE s.reason IS NULL
