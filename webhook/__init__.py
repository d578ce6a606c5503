"""pullguard: a Kubernetes admission webhook that stops ImagePullBackOff before a pod exists.

Four floors, each importing only from its own and those below (docs/architecture.md;
tests/unit/test_layering.py enforces it):

- ``webhook.core``: the pure decision engine. Image references, configuration, the walk over
  every container of every pod-carrying kind, the checks, the mutations, the messages. It
  imports no flask, no kubernetes client, no sockets and no clock; cluster and registry facts
  arrive through the protocols ``webhook.core.cluster.ClusterView`` and
  ``webhook.core.registry.RegistryView``.
- ``webhook.edge``: everything that does I/O. The Flask app and gunicorn server, the
  kubernetes-client cluster view with its caches, the registry client, config sources,
  certificates, metrics.
- ``webhook.compose``: what several entry points share, built from the two floors below: the
  serving runtime, the live judge of ``diagnose``/``audit``/the in-cluster audit, the audit
  scan, the offline judging of ``check``.
- ``webhook.cli``: the ``pullguard`` command: the parser and one module per sub-command,
  argument parsing and printing only.
"""

__version__ = "0.1.0"
