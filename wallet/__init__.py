"""Reference EUDI wallet (holder) and test PID issuer: an HTTP client of rqes (wallet identity issue)."""
