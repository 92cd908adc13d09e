"""What the contract checks return, and the helpers the explainer and metric checks share.

A check either passes, fails or is skipped (the subject's contract does not promise what it tests, or no oracle
answers it), and always says why in one line with the numbers it measured. An exception raised by the explainer or
metric under test fails the check that called it, with the exception's type and message: a broken subject gives a
failure report, never a crash of the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one explainer or metric.

    Attributes:
        subject: what was checked, e.g. ``"explainer 'saliency'"``.
        check: the check's name, e.g. ``"batch_invariance"``.
        status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        message: what was measured (passed, failed) or why the check does not apply (skipped).
    """

    subject: str
    check: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def __str__(self) -> str:
        return f"{self.subject}: {self.check} {self.status}: {self.message}"


class ContractError(AssertionError):
    """Raised by ``check_explainer`` / ``check_metric`` with ``raise_on_failure=True``: lists every failed check."""

    def __init__(self, results: list[CheckResult]) -> None:
        self.results = results
        self.failures = [result for result in results if result.failed]
        super().__init__("\n".join([f"{len(self.failures)} contract check(s) failed:", *map(str, self.failures)]))


class CheckFailure(Exception):
    """Raised inside a check when the subject breaks the contract; its message says how, with numbers."""


def run_check(subject: str, check: str, function: Callable[[], str]) -> CheckResult:
    """``function()`` as a check: its return value is the message of a pass, a ``CheckFailure`` a failure, and any
    other exception (raised by the subject under test) a failure naming the exception."""
    try:
        message = function()
    except CheckFailure as failure:
        return CheckResult(subject, check, FAILED, str(failure))
    except Exception as error:  # noqa: BLE001  (the subject's own error is the finding)
        return CheckResult(subject, check, FAILED, f"raised {type(error).__name__}: {error}")
    return CheckResult(subject, check, PASSED, message)


def skipped(subject: str, check: str, reason: str) -> CheckResult:
    return CheckResult(subject, check, SKIPPED, reason)


def finish(results: list[CheckResult], raise_on_failure: bool) -> list[CheckResult]:
    """``results``, or a ``ContractError`` listing the failures when ``raise_on_failure`` and one failed."""
    if raise_on_failure and any(result.failed for result in results):
        raise ContractError(results)
    return results


class SideEffects:
    """A snapshot of what a call must leave as it found it: every module's train/eval flag, the parameters (values,
    ``requires_grad``, ``.grad``), the buffers (e.g. batch-norm running statistics), the given tensors (the inputs of
    the call), and torch's global random generator (CPU)."""

    def __init__(self, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        self.model, self.tensors = model, tensors
        self.flags = {name: module.training for name, module in model.named_modules()}
        self.parameters = {name: (p.detach().clone(), p.requires_grad, _copy(p.grad))
                           for name, p in model.named_parameters()}
        self.buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        self.copies = {name: t.detach().clone() for name, t in tensors.items()}
        self.rng = torch.get_rng_state()

    def changes(self) -> list[str]:
        """What changed since the snapshot, one phrase each (empty when nothing did)."""
        found = []
        for name, module in self.model.named_modules():
            if module.training != self.flags.get(name, module.training):
                found.append(f"module {name or '(model)'!r} left in {'train' if module.training else 'eval'} mode "
                             f"(was {'train' if self.flags[name] else 'eval'})")
        for name, p in self.model.named_parameters():
            value, requires_grad, grad = self.parameters[name]
            if not torch.equal(p.detach(), value):
                found.append(f"parameter {name!r} changed by up to {(p.detach() - value).abs().max().item():.3g}")
            if p.requires_grad != requires_grad:
                found.append(f"parameter {name!r}: requires_grad turned {p.requires_grad}")
            if grad is None and p.grad is not None:
                found.append(f"parameter {name!r}: .grad left set (it was None)")
            elif grad is not None and (p.grad is None or not torch.equal(p.grad, grad)):
                found.append(f"parameter {name!r}: .grad changed")
        for name, b in self.model.named_buffers():
            if not torch.equal(b, self.buffers[name]):
                found.append(f"buffer {name!r} changed (e.g. batch-norm statistics updated in train mode)")
        for name, t in self.tensors.items():
            if not torch.equal(t, self.copies[name]):
                found.append(f"{name} modified in place")
        if not torch.equal(torch.get_rng_state(), self.rng):
            found.append("torch's global random generator advanced or reseeded (draw from a generator of your own)")
        return found


def _copy(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().clone()


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` as a float (NaN where exactly one is NaN counts as infinite; both NaN as equal)."""
    both_nan = torch.isnan(a) & torch.isnan(b)
    difference = (a - b).abs().masked_fill(both_nan, 0.0).nan_to_num(nan=float("inf"))
    return float(difference.max()) if difference.numel() else 0.0
