-- Daily revenue by product: one row per (order_date, product_id).
--   units_sold      Σ quantity where quantity > 0                  Int64
--   units_returned  Σ -quantity where quantity < 0                 Int64
--   gross_revenue   Σ quantity × unit_price where quantity > 0     Decimal(18,4)
--   returns_value   Σ -quantity × unit_price where quantity < 0    Decimal(18,4)
--   net_revenue     gross_revenue - returns_value                  Decimal(18,4)
--   orders          distinct order_id with a quantity > 0 line     Int64
--   product_name    the name most orders of the day give the product   Utf8
--                   (counting sale orders only when the day has one; a tie goes to the
--                   smallest name in byte order; an order's name is its lines' max), so an
--                   adjustment note ("faulty", "website fixed") does not replace the
--                   catalogue name as max(Description) did
-- Exact duplicate source rows count as they are (no dedupe).
-- Two levels: per order first, then per day and product. A single level with
-- count(DISTINCT order_id) next to the decimal sums exhausted memory in DataFusion 55.
-- max_text is max over text in a leaner group state (Ember's; about one group per order line).
WITH per_order AS (
    SELECT
        order_date,
        product_id,
        order_id,
        max_text(product_name) AS product_name,
        max_text(category) AS category,
        sum(CASE WHEN quantity > 0 THEN quantity ELSE 0 END)               AS units_sold,
        sum(CASE WHEN quantity < 0 THEN -quantity ELSE 0 END)              AS units_returned,
        sum(CASE WHEN quantity > 0 THEN quantity * unit_price ELSE 0 END)  AS gross_revenue,
        sum(CASE WHEN quantity < 0 THEN -quantity * unit_price ELSE 0 END) AS returns_value
    FROM sales
    GROUP BY order_date, product_id, order_id
)
SELECT
    product_id,
    most_frequent(product_name, units_sold > 0)         AS product_name,
    max(category)                                       AS category,
    sum(units_sold)                                     AS units_sold,
    sum(units_returned)                                 AS units_returned,
    CAST(sum(gross_revenue) AS DECIMAL(18, 4))          AS gross_revenue,
    CAST(sum(returns_value) AS DECIMAL(18, 4))          AS returns_value,
    CAST(sum(gross_revenue) - sum(returns_value) AS DECIMAL(18, 4)) AS net_revenue,
    count(order_id) FILTER (WHERE units_sold > 0)       AS orders,
    order_date
FROM per_order
GROUP BY order_date, product_id
