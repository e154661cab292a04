-- Per hour: order lines (items), orders, distinct users and reordered items.
SELECT
    w.window_start,
    w.window_start + INTERVAL '1 hour' AS window_end,
    count(*) AS items,
    count(DISTINCT w.order_id) AS orders,
    count(DISTINCT w.user_id) AS users,
    sum(w.reordered) AS reordered_items,
    to_char(w.window_start, '%Y-%m-%d') AS window_date,
    CAST(date_part('hour', w.window_start) AS INT) AS hour_of_day
FROM (
    SELECT tumble(event_time, '1 hour') AS window_start, * FROM events
) w
GROUP BY w.window_start
