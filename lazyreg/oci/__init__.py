"""Pure OCI data: digests, names, media types and manifest parsing. No I/O."""
