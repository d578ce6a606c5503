"""Findings (what is wrong, where, and the fix) and how they become a decision's text.

Denials are data: each check returns :class:`Finding` values; only the final step turns the
enforced ones into the denial message and the warned ones into kubectl warnings. The message
format is fixed by docs/reference.md ("Messages")::

    pullguard denied Deployment team-a/web: 1 problem would cause ImagePullBackOff
    - container "web": imagePullSecret "regcred" does not exist in namespace "team-a" (...).
      Fix: kubectl get secret regcred -n default -o yaml | sed '...' | kubectl apply -f -

Pure: string building only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypedDict, Unpack

from webhook.core.config import Action
from webhook.core.podspec import Container
from webhook.core.review import VALIDATE_WARNING_RUNES, bounded_warnings

if TYPE_CHECKING:
    from webhook.core.placement import Placement

#: kubectl prints each warning on its own line. The API server keeps every warning whole
#: while a request's warnings stay within 4096 runes, and cuts each to 256 only past that
#: (FACTS.md); ``review.bounded_warnings`` keeps pullguard's share within the total. A
#: problem line is kept under WARNING_MAX; a fix line goes whole up to WARNING_FIX_MAX (a
#: command cut short would be worse than none), else a line saying where to read it.
WARNING_TARGET = 120
WARNING_MAX = 256
WARNING_FIX_MAX = 1024


#: The evidence of a pull secret the kubelet cannot parse: it then pulls no image of the pod.
UNPARSEABLE = "unparseable"


class FindingFields(TypedDict, total=False):
    """The fields of a :class:`Finding` a check sets besides its subject, by name and type:
    :meth:`Finding.for_container`'s keywords."""

    fix: str | None
    short: str | None
    action: Action
    advisory: bool
    cause: str | None
    mirror: str | None
    placement: Placement | None
    evidence: str | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem a check found.

    ``subject`` names what it is about (``container "web"``); ``problem`` is the full
    sentence for a denial; ``short`` the one-line form for a warning; ``fix`` the remedy, with
    the kubectl command where one exists.
    """

    check: str
    subject: str
    problem: str
    fix: str | None = None
    short: str | None = None
    image: str | None = None
    pointer: str | None = None
    action: Action = Action.ENFORCE
    advisory: bool = False
    """Advisory findings are never enforced (a guess, such as a registry-host typo)."""
    cause: str | None = None
    """The pull failure this finding predicts, in ``webhook.core.pullfailure.Cause`` words
    (``not_found``, ``unauthorized``...), where the check knows it exactly."""
    mirror: str | None = None
    """For ``mirror_lacks``: the mirror host that lacked the image (the edge stops
    rewriting to it for a while)."""
    placement: Placement | None = None
    """For ``platform``: the pod-spec fields (os/arch selector, tolerations) that put the
    pod on nodes with a build, so ``diagnose`` patches the owner with them."""
    evidence: str | None = None
    """What the check saw that the finding rests on, where the policy weighs it: the
    registry's answer for the image (a ``registry.Outcome`` value, ``unauthorized``...), or
    :data:`UNPARSEABLE` for a pull secret the kubelet cannot parse."""

    @classmethod
    def for_container(
        cls,
        check: str,
        container: Container,
        *,
        problem: str,
        pointer: str | None = None,
        **fields: Unpack[FindingFields],
    ) -> Finding:
        """A finding about one container's image (pointer defaults to its ``image``). The
        other fields are typed (:class:`FindingFields`), so mypy refuses a misspelt or
        mistyped one."""
        return cls(
            check=check,
            subject=container.label,
            problem=problem,
            image=container.shown_image,
            pointer=pointer or container.image_pointer,
            **fields,
        )

    def as_advisory(self, problem_note: str = "", short_note: str = "") -> Finding:
        """The same finding, never enforced; the notes say why (appended to the texts)."""
        return replace(
            self,
            advisory=True,
            problem=self.problem + problem_note,
            short=(self.short or self.problem) + short_note if short_note else self.short,
        )

    def with_action(self, action: Action) -> Finding:
        if self.advisory and action is Action.ENFORCE:
            action = Action.WARN
        return replace(self, action=action)

    def warning_texts(self) -> list[str]:
        """kubectl warning lines: what is wrong, kept under :data:`WARNING_TARGET` where the
        facts fit, and then the fix when one exists: whole up to :data:`WARNING_FIX_MAX`,
        else where to read it whole (a command cut short would be worse than none). Each
        starts with ``pullguard:``, so a developer can tell where it comes from."""
        body = self.short or self.problem
        text = f"pullguard: {self.subject}: {body}"
        if len(text) > WARNING_MAX:
            text = text[: WARNING_MAX - 3] + "..."
        lines = [text]
        if self.fix:
            fix = f"pullguard: fix: {self.fix}"
            if len(fix) > WARNING_FIX_MAX:
                fix = (
                    "pullguard: fix: too long for a warning: run `pullguard check -f` on the "
                    "manifest to read it whole (or see the denial)"
                )
            lines.append(fix)
        return lines


def describe_object(kind: str, namespace: str, name: str, generate_name: str = "") -> str:
    """``Deployment team-a/web``; a Pod with only ``generateName`` shows as ``team-a/web-*``."""
    if not name:
        name = f"{generate_name}*" if generate_name else "(unnamed)"
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


#: Problems a denial message lists: a pod with 20,000 malformed image references once got a
#: 3.8 MB message. The count in the first line is always the whole count.
MAX_PROBLEMS_LISTED = 20


def denial_message(subject: str, findings: Sequence[Finding]) -> str:
    """The denial text: the object, then one entry per problem with its fix (at most
    :data:`MAX_PROBLEMS_LISTED`, then how many more)."""
    count = len(findings)
    lines = [
        f"pullguard denied {subject}: {count} problem{'s' if count != 1 else ''} "
        "would cause ImagePullBackOff"
    ]
    lines.extend(_problem_lines(findings[:MAX_PROBLEMS_LISTED]))
    if count > MAX_PROBLEMS_LISTED:
        lines.append(f"- {count - MAX_PROBLEMS_LISTED} more problems not shown")
    return "\n".join(lines)


def _problem_lines(findings: Sequence[Finding]) -> list[str]:
    lines = []
    for finding in findings:
        problem = finding.problem.rstrip()
        if not problem.endswith((".", "?", "!")):
            problem += "."
        lines.append(f"- {finding.subject}: {problem}")
        if finding.fix:
            lines.append(f"  Fix: {finding.fix}")
    return lines


def warning_lines(findings: Sequence[Finding], extra: Sequence[str] = ()) -> list[str]:
    """kubectl warnings for ``findings`` plus ``extra`` lines, within the validating
    webhook's share of what the API server keeps (:func:`review.bounded_warnings`)."""
    lines = [line for f in findings for line in f.warning_texts()] + list(extra)
    return bounded_warnings(lines, VALIDATE_WARNING_RUNES)
