"""The sync pipeline: tags -> manifests -> blobs -> a new repository version."""
