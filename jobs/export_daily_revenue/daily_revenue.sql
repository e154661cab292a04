-- The daily revenue rows with the table's columns; order_date comes from the partition folder.
SELECT
    CAST(order_date AS DATE) AS order_date,
    product_id,
    product_name,
    units_sold,
    units_returned,
    gross_revenue,
    returns_value,
    net_revenue,
    orders
FROM daily
