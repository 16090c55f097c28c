"""pytest plugin: perceptual image assertions (E-LPIPS) for renderer and denoiser test suites.

    def test_denoiser(assert_elpips_below, tmp_path):
        out = render_and_denoise(tmp_path)                       # writes a PNG, or returns an array
        assert_elpips_below("golden/cornell.png", out, 0.015)    # paths or numpy arrays

`assert_elpips_below(reference, candidate, max_distance, *, linear=False)` is a sequential gate
(`Context.decide`, as `elpips check`) on a session-wide `elpips.Context` (fixture
`elpips_context`): sampling stops as soon as the distance is shown below or above `max_distance`
at a 5% error rate (8 samples first, at most 200; a pair still undecided then is settled by the
side of its estimate, and the message says so). With `--elpips-samples N` it compares an N-sample
estimate with `max_distance` instead. It raises AssertionError, with the distance, its 95%
half-width and the sample count, when the candidate fails; returns the `elpips.Result` either way,
and records it on the test as the user properties `elpips_distance` / `elpips_ci95` /
`elpips_max_distance` (pytest's --junitxml reports them).

Options (command line, or the same names with underscores in the ini file):
  --elpips-metric elpips-vgg|lpips-vgg|lpips-alex   (default elpips-vgg)
  --elpips-seed S                                    (default 0: the same verdict every run)
  --elpips-samples N                                 (fixed sample count; default: the gate)

Under pytest-xdist each worker has its own context. Installed by `pip install plugins/pytest`
(entry point `elpips`); or list it in a conftest.py: `pytest_plugins = ["pytest_elpips"]`.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import pytest

import elpips

Image = Union[str, "os.PathLike[str]", np.ndarray]


def pytest_addoption(parser):
    group = parser.getgroup("elpips", "perceptual image assertions (E-LPIPS)")
    for name, help_text in (
        ("metric", "metric of the assertions: elpips-vgg (default), lpips-vgg or lpips-alex"),
        ("seed", "seed of the E-LPIPS draws (default 0)"),
        ("samples", "draw exactly N E-LPIPS samples and compare their mean (default: a sequential gate)"),
    ):
        group.addoption(f"--elpips-{name}", dest=f"elpips_{name}", default=None, help=help_text)
        parser.addini(f"elpips_{name}", help_text, default=None)


def _option(config, name: str) -> Optional[str]:
    value = config.getoption(f"elpips_{name}")
    return value if value is not None else config.getini(f"elpips_{name}")


def _integer(config, name: str) -> Optional[int]:
    value = _option(config, name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"--elpips-{name} takes an integer, not {value!r}") from None


@pytest.fixture(scope="session")
def elpips_context(pytestconfig):
    """One elpips.Context for the session, configured by the --elpips-* options."""
    metric = _option(pytestconfig, "metric") or "elpips-vgg"
    seed = _integer(pytestconfig, "seed") or 0
    samples = _integer(pytestconfig, "samples")
    try:
        ctx = elpips.Context(metric, seed=seed, samples=samples)
        ctx.fixed_samples = samples is not None
    except (ValueError, elpips.ElpipsError) as e:
        raise pytest.UsageError(f"pytest-elpips cannot make its context: {e}") from None
    with ctx:
        yield ctx


def _measure(ctx, reference: Image, candidate: Image, max_distance: float, linear: bool):
    """(result, passed, note): the gate's verdict, or a fixed-sample estimate against the threshold."""
    arrays = [isinstance(x, np.ndarray) for x in (reference, candidate)]
    if any(arrays) and not all(arrays):
        raise TypeError("give reference and candidate both as file paths or both as numpy arrays")
    if ctx.fixed_samples:
        r = ctx.compare(reference, candidate, linear=linear) if all(arrays) else ctx.compare_files(reference, candidate)
        return r, r.distance <= max_distance, ""
    d = ctx.decide(reference, candidate, max_distance, linear=linear)
    note = " [undecided at the sample cap: settled by the estimate]" if d.verdict == "undecided" else ""
    return d.result, d.passed, note


def _describe(x: Image) -> str:
    return f"array {x.shape} {x.dtype}" if isinstance(x, np.ndarray) else f'"{os.fspath(x)}"'


@pytest.fixture
def assert_elpips_below(elpips_context, request):
    """assert_elpips_below(reference, candidate, max_distance, *, linear=False) -> elpips.Result"""

    def check(reference: Image, candidate: Image, max_distance: float, *, linear: bool = False) -> elpips.Result:
        __tracebackhide__ = True
        if not (isinstance(max_distance, (int, float)) and max_distance >= 0):
            raise ValueError(f"max_distance must be a distance >= 0, not {max_distance!r}")
        r, passed, note = _measure(elpips_context, reference, candidate, max_distance, linear)
        request.node.user_properties.extend(
            [("elpips_distance", r.distance), ("elpips_ci95", r.ci95), ("elpips_max_distance", max_distance)])
        if not passed:
            raise AssertionError(
                f"{elpips_context.metric} distance of {_describe(candidate)} from {_describe(reference)} is "
                f"{r.distance:.4f} ± {r.ci95:.4f} (95%, {r.samples} samples){note}, above the allowed {max_distance}")
        return r

    return check
