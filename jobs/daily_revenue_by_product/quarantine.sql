-- Rejected rows: the original fields as text, the reason, where the row comes from
-- (source_file, source_line), a broken line's raw text and why (raw_line, malformed; NULL
-- otherwise), and order_date for partitioning (rows whose date does not parse, broken lines
-- among them, go to order_date=__HIVE_DEFAULT_PARTITION__).
SELECT
    InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country,
    reason, source_file, source_line, raw_line, malformed,
    CAST(order_ts AS DATE) AS order_date
FROM checked_sales
WHERE reason IS NOT NULL
