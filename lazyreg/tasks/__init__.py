"""Background tasks: a row per task, run in the server's event loop, progress recorded."""
