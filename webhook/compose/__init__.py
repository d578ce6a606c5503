"""The composition floor: what several entry points share, built from ``webhook.edge`` and
``webhook.core``.

- :mod:`~webhook.compose.serving`: the serving runtime of ``pullguard serve`` (gunicorn's
  master, and the :class:`~webhook.edge.app.Runtime` each worker builds).
- :mod:`~webhook.compose.livecheck`: the live configuration, the registry client and the
  judging of one object, shared by ``diagnose``, ``audit`` and the in-cluster audit.
- :mod:`~webhook.compose.scan`: the audit scan (``audit`` and the in-cluster audit).
- :mod:`~webhook.compose.inclusteraudit`: the scan run by the webhook on an interval.
- :mod:`~webhook.compose.livediagnose`: what ``diagnose`` reads of a pod and judges.
- :mod:`~webhook.compose.offline`: what ``check`` and ``serve --dev`` judge without a cluster.
- :mod:`~webhook.compose.stateexport`: the redacted state ``export-state`` writes.

Must not: parse arguments or print results for a command (that is ``webhook.cli``), or
import from it; decisions stay in ``webhook.core``.
"""
