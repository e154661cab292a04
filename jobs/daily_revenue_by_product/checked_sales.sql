-- Every raw row, its original fields (text), the canonical typed columns, and `reason`: why
-- the row is rejected, or NULL when it is valid. First matching rule wins:
--   malformed_line          the CSV line itself is broken (wrong number of fields, an
--                           unterminated quote, invalid UTF-8): its fields are NULL and
--                           _corrupt_record holds its text, _corrupt_reason why
--   missing_product_id      StockCode empty
--   missing_quantity        Quantity empty
--   quantity_not_integer    Quantity is not a whole number in the BIGINT range ("1.5", "x")
--   zero_quantity           Quantity = 0
--   missing_unit_price      UnitPrice empty
--   unit_price_not_number   UnitPrice is not a decimal number
--   unit_price_too_precise  UnitPrice has more than 4 decimal places (never rounded silently)
--   negative_unit_price     UnitPrice < 0 (UnitPrice = 0 is valid: free items, adjustments)
--   missing_order_ts        InvoiceDate empty
--   bad_order_ts            InvoiceDate does not parse with ${timestamp_format}
-- Negative quantities are valid: they are returns and cancellations.
WITH typed AS (
    SELECT
        InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country,
        NULLIF(trim(InvoiceNo), '')                          AS order_id,
        try_to_timestamp(InvoiceDate, '${timestamp_format}') AS order_ts,
        NULLIF(trim(StockCode), '')                          AS product_id,
        NULLIF(trim(Quantity), '')                           AS quantity_text,
        try_cast(trim(Quantity) AS BIGINT)                   AS quantity,
        NULLIF(trim(UnitPrice), '')                          AS unit_price_text,
        try_cast(trim(UnitPrice) AS DECIMAL(18, 4))          AS unit_price,
        -- "17850.0" (a float export of an integer id) becomes "17850"
        NULLIF(regexp_replace(trim(CustomerID), '\.0+$', ''), '') AS customer_id,
        NULLIF(trim(Country), '')                            AS country,
        NULLIF(trim(Description), '')                        AS description,
        _file, _line, _corrupt_record, _corrupt_reason
    FROM raw_sales
),
checked AS (
SELECT
    InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country,
    order_id, order_ts, product_id, quantity, unit_price, customer_id, country, description,
    _file, _line, _corrupt_record, _corrupt_reason,
    CASE
        WHEN _corrupt_record IS NOT NULL THEN 'malformed_line'
        WHEN product_id IS NULL THEN 'missing_product_id'
        WHEN quantity_text IS NULL THEN 'missing_quantity'
        WHEN quantity IS NULL THEN 'quantity_not_integer'
        WHEN quantity = 0 THEN 'zero_quantity'
        WHEN unit_price_text IS NULL THEN 'missing_unit_price'
        WHEN unit_price IS NULL THEN 'unit_price_not_number'
        WHEN strpos(unit_price_text, '.') > 0
             AND length(unit_price_text) - strpos(unit_price_text, '.') > 4 THEN 'unit_price_too_precise'
        WHEN unit_price < 0 THEN 'negative_unit_price'
        WHEN NULLIF(trim(InvoiceDate), '') IS NULL THEN 'missing_order_ts'
        WHEN order_ts IS NULL THEN 'bad_order_ts'
    END AS reason
FROM typed
)
-- A rejected row's original fields (text, as read), where it comes from (file and line), and a
-- broken line's text and why; NULL for valid rows, which the output reads typed, so the cached
-- copy does not carry them for every row (writing them cost about 10 % of the cache step).
SELECT
    CASE WHEN reason IS NOT NULL THEN InvoiceNo END   AS InvoiceNo,
    CASE WHEN reason IS NOT NULL THEN StockCode END   AS StockCode,
    CASE WHEN reason IS NOT NULL THEN Description END AS Description,
    CASE WHEN reason IS NOT NULL THEN Quantity END    AS Quantity,
    CASE WHEN reason IS NOT NULL THEN InvoiceDate END AS InvoiceDate,
    CASE WHEN reason IS NOT NULL THEN UnitPrice END   AS UnitPrice,
    CASE WHEN reason IS NOT NULL THEN CustomerID END  AS CustomerID,
    CASE WHEN reason IS NOT NULL THEN Country END     AS Country,
    order_id, order_ts, product_id, quantity, unit_price, customer_id, country, description,
    reason,
    CASE WHEN reason IS NOT NULL THEN _file END AS source_file,
    CASE WHEN reason IS NOT NULL THEN _line END AS source_line,
    _corrupt_record                             AS raw_line,
    _corrupt_reason                             AS malformed
FROM checked
