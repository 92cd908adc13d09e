"""Named reductions of attributions to maps, and per-map normalisation."""

import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.explainers.reduce import NORMALIZATIONS, REDUCTIONS, normalize_maps, reduce_attributions

# Two channels of a 1x2 image: pixel 0 holds (1, -3), pixel 1 holds (-2, 0.5).
ATTRIBUTIONS = torch.tensor([[[[1.0, -2.0]], [[-3.0, 0.5]]]])
INPUTS = torch.tensor([[[[0.5, 1.0]], [[2.0, 4.0]]]])


@pytest.mark.parametrize(
    "reduction, expected",
    [
        ("abs-sum", [4.0, 2.5]),
        ("sum", [-2.0, -1.5]),
        ("input-sum", [0.5 - 6.0, -2.0 + 2.0]),
        ("max-abs", [3.0, 2.0]),
    ],
)
def test_reductions_give_the_documented_values(reduction, expected):
    maps = reduce_attributions(ATTRIBUTIONS, reduction, inputs=INPUTS)
    torch.testing.assert_close(maps, torch.tensor([[expected]]))


def test_every_reduction_is_listed():
    assert set(REDUCTIONS) == {"abs-sum", "sum", "input-sum", "max-abs"}
    assert set(NORMALIZATIONS) == {"min-max", "max-abs"}


def test_reduction_errors():
    with pytest.raises(XaitrustError, match="reduction must be one of"):
        reduce_attributions(ATTRIBUTIONS, "mean")
    with pytest.raises(XaitrustError, match="pass inputs=x"):
        reduce_attributions(ATTRIBUTIONS, "input-sum")
    with pytest.raises(XaitrustError, match=r"must have the attributions' shape \(1, 2, 1, 2\)"):
        reduce_attributions(ATTRIBUTIONS, "input-sum", inputs=INPUTS[:, :1])
    with pytest.raises(XaitrustError, match=r"attributions must be a tensor \(B, C, H, W\)"):
        reduce_attributions(ATTRIBUTIONS[0], "sum")
    with pytest.raises(XaitrustError, match="contain NaN or infinite values"):
        reduce_attributions(ATTRIBUTIONS.clone().fill_(float("nan")), "sum")


def test_normalisations_per_map():
    maps = torch.tensor([[[-1.0, 3.0], [1.0, 0.0]], [[2.0, 4.0], [6.0, 10.0]]])
    torch.testing.assert_close(
        normalize_maps(maps, "min-max"), torch.tensor([[[0.0, 1.0], [0.5, 0.25]], [[0.0, 0.25], [0.5, 1.0]]])
    )
    torch.testing.assert_close(
        normalize_maps(maps, "max-abs"), torch.tensor([[[-1 / 3, 1.0], [1 / 3, 0.0]], [[0.2, 0.4], [0.6, 1.0]]])
    )


def test_maps_without_spread_become_zeros():
    maps = torch.stack([torch.full((3, 3), 7.0), torch.zeros(3, 3), torch.arange(9.0).reshape(3, 3)])
    min_max, max_abs = normalize_maps(maps, "min-max"), normalize_maps(maps, "max-abs")
    assert torch.equal(min_max[:2], torch.zeros(2, 3, 3))
    assert torch.equal(max_abs[0], torch.ones(3, 3)) and torch.equal(max_abs[1], torch.zeros(3, 3))
    assert min_max[2].amax() == 1.0 and max_abs[2, 0, 0] == 0.0


def test_normalisation_errors():
    with pytest.raises(XaitrustError, match="normalisation method must be one of"):
        normalize_maps(torch.zeros(1, 2, 2), "z-score")
    with pytest.raises(XaitrustError, match=r"maps must be a float tensor \(B, H, W\)"):
        normalize_maps(torch.zeros(1, 1, 2, 2))
    with pytest.raises(XaitrustError, match="maps contain NaN"):
        normalize_maps(torch.tensor([[[0.0, float("nan")]]]))
