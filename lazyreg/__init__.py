"""lazyreg: a container repository manager that mirrors OCI registries lazily."""

__version__ = "0.1.0"
