-- One row per log line, partitioned by a date (Flume's %Y/%m/%d as date=YYYY-MM-DD): the line's
-- own date by default (`date_of = "log_time"`), or the micro-batch's (`date_of = "now()"`, the
-- arrival date, Flume's useLocalTimeStamp). now() is the micro-batch's planned processing time,
-- the same when a crashed batch runs again. For a files source, kafka_offset is the line number
-- in its file (kafka_partition the file's place in its batch); the quarantine names the file.
SELECT
  log_time,
  level,
  service,
  message,
  kafka_offset AS line_number,
  now() AS ingested_at,
  CAST(${date_of} AS DATE) AS date
FROM events
