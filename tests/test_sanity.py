"""Cascading model-parameter randomisation and data randomisation (Adebayo et al. 2018)."""

import pytest
import torch
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.metrics.sanity import cascading_randomization, data_randomization_similarity


class SmallCNN(nn.Module):
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SmallCNN()


def test_cascading_randomization_starts_at_one_and_drops(model):
    x = torch.rand(6, 1, 8, 8)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    result = cascading_randomization(model, get_explainer("saliency"), x, 0, seed=1)
    assert result.steps == ["original", "fc", "conv2", "conv1"]
    for name in ("spearman", "ssim"):
        similarity = result.similarity[name]
        assert similarity.shape == (4, 6)
        torch.testing.assert_close(similarity[0], torch.ones(6), atol=1e-5, rtol=0)
        assert similarity[-1].mean() < 0.6, name
        assert torch.all(similarity[1:].mean(dim=1) < 0.95), name
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())  # original untouched


def test_cascading_randomization_is_deterministic_and_takes_chosen_layers(model):
    x = torch.rand(3, 1, 8, 8)
    explainer = get_explainer("gradient-input")
    first = cascading_randomization(model, explainer, x, 1, layers=["fc"], similarity="spearman", seed=4)
    again = cascading_randomization(model, explainer, x, 1, layers=["fc"], similarity="spearman", seed=4, batch_size=1)
    assert first.steps == ["original", "fc"] and list(first.similarity) == ["spearman"]
    torch.testing.assert_close(first.similarity["spearman"], again.similarity["spearman"])


def test_cascading_randomization_rejects_unknown_names(model):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(XaitrustError, match="similarity"):
        cascading_randomization(model, get_explainer("saliency"), x, 0, similarity="cosine")
    with pytest.raises(XaitrustError, match="no layer named 'head'"):
        cascading_randomization(model, get_explainer("saliency"), x, 0, layers=["head"])


def test_data_randomization_similarity():
    generator = torch.Generator().manual_seed(0)
    normal = torch.rand(4, 9, 9, generator=generator)
    scores = data_randomization_similarity(normal, normal.clone())
    torch.testing.assert_close(scores["spearman"], torch.ones(4))
    torch.testing.assert_close(scores["ssim"], torch.ones(4), atol=1e-6, rtol=0)
    other = data_randomization_similarity(normal, torch.rand(4, 9, 9, generator=generator))
    assert other["spearman"].abs().max() < 0.5 and other["ssim"].max() < 0.5
    with pytest.raises(XaitrustError, match="same shape"):
        data_randomization_similarity(normal, normal[:, :8])
