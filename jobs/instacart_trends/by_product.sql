-- Per day and product: order lines (items), orders and reordered items. LEFT JOIN: a product
-- missing from the dimension keeps its counts, with a NULL name and department (and is
-- counted as unmatched.products).
SELECT
    w.window_start,
    w.window_start + INTERVAL '1 day' AS window_end,
    w.product_id,
    max(p.product_name) AS product_name,
    max(d.department) AS department,
    count(*) AS items,
    count(DISTINCT w.order_id) AS orders,
    sum(w.reordered) AS reordered_items,
    to_char(w.window_start, '%Y-%m-%d') AS window_date
FROM (
    SELECT tumble(event_time, '1 day') AS window_start, * FROM events
) w
LEFT JOIN products p ON p.product_id = w.product_id
LEFT JOIN departments d ON d.department_id = p.department_id
GROUP BY w.window_start, w.product_id
