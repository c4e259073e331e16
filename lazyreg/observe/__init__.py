"""What the server tells its operators: metrics, request and task logs, health, a status page.

- `metrics`: the Prometheus families, owned by the application (one registry per app);
- `traffic`: what the cache saved, overall and per minute for the last hour;
- `logs`: request ids, text or JSON log lines;
- `requests`: the request hook (id, log line, counters) and `GET /metrics`;
- `health`: `GET /healthz` and `GET /readyz`;
- `status_page`: `GET /`, server-rendered HTML with inline SVG.

Lower layers (the upstream client, the task runner, the blob handler) never
import this package's heavy parts: they call small observer methods they are
given, or mark a request (`marks`).
"""
