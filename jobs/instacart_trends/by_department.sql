-- Per day and department: order lines (items), orders and distinct products. INNER JOIN: an
-- order line whose product is not in the dimension has no department and is left out here
-- (counted as unmatched.products).
SELECT
    w.window_start,
    w.window_start + INTERVAL '1 day' AS window_end,
    d.department_id,
    d.department,
    count(*) AS items,
    count(DISTINCT w.order_id) AS orders,
    count(DISTINCT w.product_id) AS products,
    to_char(w.window_start, '%Y-%m-%d') AS window_date
FROM (
    SELECT tumble(event_time, '1 day') AS window_start, * FROM events
) w
JOIN products p ON p.product_id = w.product_id
JOIN departments d ON d.department_id = p.department_id
GROUP BY w.window_start, d.department_id, d.department
