"""dramatiq middleware every worker pool runs: logs, metrics, retries, failing closed."""
