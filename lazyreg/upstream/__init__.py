"""The upstream registry client: auth, retries, tags, manifests and blob streams."""
