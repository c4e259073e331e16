"""Export a repository version as an OCI image layout, and import one (the air gap).

`export` writes a version's tags, manifests and blobs (fetching lazily what is
not stored yet, through the ordinary lazy path) as a directory, a tar or a
gzipped tar; `importer` checks such a layout whole (digests, sizes, closures,
paths) before it stores anything, then writes one new version. Both run as
task kinds (`tasks`).
"""
