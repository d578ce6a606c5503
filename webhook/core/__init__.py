"""The pure core: every decision pullguard makes, as functions of the facts they are given.

What lives here: parsing and judging an AdmissionReview (:mod:`~webhook.core.review`,
:mod:`~webhook.core.validate`, :mod:`~webhook.core.mutate`), the pull plan of each image and
the checks that read it (:mod:`~webhook.core.pullplan`, :mod:`~webhook.core.checks`), the
findings and their messages (:mod:`~webhook.core.findings`, :mod:`~webhook.core.fixcommands`),
the configuration (:mod:`~webhook.core.config`) and the diagnoses of ``diagnose``/``audit``.
Facts about the world come in through :class:`~webhook.core.cluster.ClusterView` and
:class:`~webhook.core.registry.RegistryView`, implemented in ``webhook.edge`` (or in memory,
in tests).

Must not: do I/O (no files, sockets, HTTP, kubernetes client, environment, printing), read a
clock or draw random numbers (the same review always gets the same answer), or import
anything but the standard library's pure modules, yaml (safe loads only), orjson, jsonpatch
and the core itself. tests/unit/test_layering.py is the guard.
"""
