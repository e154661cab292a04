-- Rejected rows: the original fields as text, the reason, and order_date for partitioning
-- (rows whose date does not parse go to order_date=__HIVE_DEFAULT_PARTITION__).
SELECT
    InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country,
    reason,
    CAST(order_ts AS DATE) AS order_date
FROM checked_sales
WHERE reason IS NOT NULL
