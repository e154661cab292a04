-- The imported rows as they are in the database, with the partition column.
SELECT
    id,
    invoice_no,
    stock_code,
    description,
    quantity,
    invoice_date,
    unit_price,
    customer_id,
    country,
    CAST(invoice_date AS DATE) AS order_date
FROM transactions
