"""pullguard: a Kubernetes admission webhook that stops ImagePullBackOff before a pod exists.

Layout (dependencies point inward only; a test enforces it):

- ``webhook.core``: the pure decision engine. Image references, configuration, the walk over
  every container of every pod-carrying kind, the checks, the mutations, the messages. It
  imports no flask, no kubernetes client, no sockets and no clock; cluster and registry facts
  arrive through the small protocols in ``webhook.core.ports``.
- ``webhook.edge``: everything that does I/O. The Flask app and gunicorn server, the
  kubernetes-client cluster view with its caches, the registry client, config sources,
  certificates, metrics.
- ``webhook.cli``: the ``pullguard`` command.
"""

__version__ = "0.1.0"
