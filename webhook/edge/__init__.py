"""Everything that does I/O: HTTP, the cluster, registries, files, certificates, metrics.

Each module here translates between the outside world and ``webhook.core`` and holds no
decision logic of its own.
"""
