-- One row per log line, in the log's own time, partitioned by its date (Flume's %Y/%m/%d as
-- date=YYYY-MM-DD). kafka_partition/kafka_offset hold, for a files source, the file's place in
-- its micro-batch and the line number; the quarantine names the file.
SELECT
  log_time,
  level,
  service,
  message,
  kafka_offset AS line_number,
  CAST(log_time AS DATE) AS date
FROM events
