"""Why a WorkerPool's pods do not become ready, from their containers' waiting states (pure).

Only states that will not fix themselves by waiting are named: the image cannot be pulled or
is not on the node (imagePullPolicy Never), the container cannot be created from its config
(a missing Secret or key), or it keeps crashing. A container that is merely starting
(ContainerCreating, PodInitializing) is not a problem.
"""

from __future__ import annotations

from dataclasses import dataclass

# Reasons the kubelet reports in containerStatuses[].state.waiting.reason.
IMAGE_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)
STUCK_REASONS = IMAGE_REASONS | {
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
}
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class ContainerWaiting:
    """One container of one pod, waiting: the kubelet's reason and message."""

    pod: str
    container: str
    reason: str
    message: str


@dataclass(frozen=True)
class PodProblem:
    reason: str  # the kubelet's, e.g. ErrImageNeverPull
    message: str  # names the pod, the container and the kubelet's message


def pod_problem(waiting: list[ContainerWaiting]) -> PodProblem | None:
    """The first stuck container (image problems first, then by pod name), or None; the
    message says how many pods are stuck alike."""
    stuck = [w for w in waiting if w.reason in STUCK_REASONS]
    if not stuck:
        return None
    stuck.sort(key=lambda w: (w.reason not in IMAGE_REASONS, w.pod, w.container))
    first = stuck[0]
    alike = {w.pod for w in stuck if w.reason == first.reason}
    detail = first.message.strip()[:MAX_MESSAGE_CHARS] or first.reason
    more = f" (and {len(alike) - 1} more pods)" if len(alike) > 1 else ""
    return PodProblem(
        first.reason,
        f"pod {first.pod}{more}: container {first.container}: {first.reason}: {detail}",
    )
