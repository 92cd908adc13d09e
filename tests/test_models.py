"""Model architectures: shapes, training, normalisation, CAM layers, rebuild from spec, and the Lipschitz bound."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev, vmap

from xaitrust.errors import XaitrustError
from xaitrust.models import ImageClassifier, available_models, build_model
from xaitrust.models.lipschitz_layers import conv_operator_norm

NAMES = ["cnn", "mnist-cnn", "resnet18", "lipschitz-cnn"]
# Narrow variants keep the tests fast; the architecture is the same.
SMALL = {"cnn": {"channels": [8, 16], "hidden": 32}, "mnist-cnn": {}, "resnet18": {"base_filters": 4},
         "lipschitz-cnn": {"channels": [8, 8, 8]}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on a busy 2-core machine one torch thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(name, in_channels=1, size=8, **kwargs):
    return build_model(name, in_channels, 10, size, **{**SMALL[name], **kwargs})


def without_dropout(name):
    return {"dropout": 0.0} if "dropout" in available_models()[name].options else {}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels, size", [(1, 8), (1, 28), (3, 32), (3, (16, 12))])
def test_forward_gives_per_image_float_logits(name, in_channels, size):
    model = small(name, in_channels, size).eval()
    height, width = (size, size) if isinstance(size, int) else size
    x = torch.rand(5, in_channels, height, width)
    logits = model(x)
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert torch.allclose(model(x[2:3])[0], logits[2], atol=1e-5)  # each image is classified on its own
    assert (logits[0] - logits[1]).abs().max() > 1e-6  # different images, different logits


@pytest.mark.parametrize("name", NAMES)
def test_a_few_training_steps_reduce_the_loss_on_a_fixed_batch(name):
    model = small(name, 1, 8, mean=[0.5], std=[0.2], **without_dropout(name)).train()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # A 1-Lipschitz network's logits move slowly (its margins are bounded), hence an absolute threshold.
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_normalised_with_the_stored_mean_and_std(name):
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.5, 0.25, 2.0])
    normalised = small(name, 3, 16, mean=mean, std=std).eval()
    plain = small(name, 3, 16).eval()
    weights = {k: v for k, v in normalised.state_dict().items() if not k.startswith("input_")}
    plain.load_state_dict(weights, strict=False)
    x = torch.rand(4, 3, 16, 16)
    shift = (mean / std).reshape(1, 3, 1, 1)
    assert torch.allclose(normalised(x), plain(x / std.reshape(1, 3, 1, 1) - shift), atol=1e-5)
    assert not torch.allclose(normalised(x), plain(x), atol=1e-3)
    plain.set_normalization(mean, std)
    assert torch.allclose(plain(x), normalised(x), atol=1e-6)


def test_a_single_mean_and_std_serve_every_channel_and_bad_lengths_are_refused():
    model = small("cnn", 3, 8, mean=[0.5], std=[0.25])
    assert model.input_mean.flatten().tolist() == [0.5] * 3 and model.input_std.flatten().tolist() == [0.25] * 3
    with pytest.raises(XaitrustError, match="one finite value per input channel \\(3\\)"):
        model.set_normalization([0.1, 0.2], [1.0, 1.0])
    with pytest.raises(XaitrustError, match="std must be >= 0"):
        small("cnn", 1, 8, std=[-1.0])


CAM_SHAPES = {"cnn": (16, 14, 14), "mnist-cnn": (16, 14, 14), "resnet18": (32, 4, 4), "lipschitz-cnn": (8, 7, 7)}


@pytest.mark.parametrize("name", NAMES)
def test_cam_layer_gives_spatial_feature_maps_that_the_logits_depend_on(name):
    model = small(name, 1, 28).eval()
    captured = []
    handle = model.cam_layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    logits = model(torch.rand(2, 1, 28, 28))
    handle.remove()
    (features,) = captured
    assert features.shape == (2, *CAM_SHAPES[name])
    if name != "lipschitz-cnn":  # rectified feature maps (the Lipschitz net has no activation after its last conv)
        assert features.min() >= 0 and features.max() > 0
    (gradient,) = torch.autograd.grad(logits[:, 3].sum(), features)
    assert gradient.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_rebuilding_from_the_spec_and_loading_the_state_dict_reproduces_the_outputs(name):
    model = small(name, 3, 16, mean=[0.2, 0.3, 0.4], std=[0.3, 0.3, 0.3])
    x = torch.rand(8, 3, 16, 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), torch.arange(8)).backward()  # also moves batch-norm running statistics
    optimizer.step()
    model.eval()
    spec = json.loads(json.dumps(model.spec))
    torch.manual_seed(123)
    rebuilt = build_model(spec["name"], spec["in_channels"], spec["num_classes"], spec["image_size"], **spec["options"])
    rebuilt.eval()
    assert not torch.allclose(rebuilt(x), model(x))
    rebuilt.load_state_dict(model.state_dict())
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert torch.equal(rebuilt(x), model(x))
    assert rebuilt.spec == model.spec and rebuilt.cam_layer_name == model.cam_layer_name


def test_available_models_lists_every_architecture_with_the_defaults_recorded_in_spec():
    models = available_models()
    assert sorted(models) == sorted(NAMES)
    assert models["resnet18"].options == {"base_filters": 64, "dropout": 0.0}
    assert models["lipschitz-cnn"].options == {"channels": [48, 96, 96], "activation": "maxmin", "dropout": 0.2}
    assert build_model("cnn", 1, 10, 28).spec["options"] == models["cnn"].options
    assert isinstance(build_model("cnn", 1, 10, 28), ImageClassifier)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_model("vgg", 1, 10, 28), "unknown model 'vgg'; available: cnn, lipschitz-cnn, mnist-cnn, res"),
        (lambda: build_model("resnet18", 1, 10, 28, width=3), "no option width; its options: base_filters, dropout"),
        (lambda: build_model("mnist-cnn", 1, 10, 28, dropout=0.1), "no option dropout; its options: none"),
        (lambda: build_model("cnn", 1, 10, 28, dropout=1.5), "dropout must be a number in \\[0, 1\\)"),
        (lambda: build_model("cnn", 1, 10, 28, channels=[]), "channels must be a non-empty list"),
        (lambda: build_model("lipschitz-cnn", 1, 10, 28, activation="tanh"), "activation must be one of maxmin, prelu"),
        (lambda: build_model("lipschitz-cnn", 1, 10, 28, channels=[5, 8, 8]), "must be even"),
        (lambda: build_model("lipschitz-cnn", 1, 10, 4), "at least 8x8 pixels"),
        (lambda: build_model("cnn", 0, 10, 28), "in_channels must be a positive integer"),
        (lambda: build_model("cnn", 1, 1, 28), "num_classes must be at least 2"),
        (lambda: build_model("cnn", 1, 10, (28, 28, 3)), "image_size must be a positive int or a pair"),
    ],
)
def test_bad_names_and_options_are_refused_with_the_allowed_values(call, message):
    with pytest.raises(XaitrustError, match=message):
        call()


# --- Lipschitz bound -------------------------------------------------------------------------------------------------


def conv_matrix(weight, size):
    """The dense matrix of the zero-padded 'same' convolution with ``weight`` on ``size x size`` images."""
    inputs = weight.shape[1] * size * size
    basis = torch.eye(inputs).reshape(inputs, weight.shape[1], size, size)
    return F.conv2d(basis, weight, padding=1).reshape(inputs, -1).T


@pytest.mark.parametrize("out_channels, in_channels, size", [(3, 2, 6), (4, 4, 5), (2, 3, 9)])
def test_conv_operator_norm_bounds_the_exact_norm_of_the_zero_padded_convolution_tightly(
    out_channels, in_channels, size
):
    for _ in range(3):
        weight = torch.randn(out_channels, in_channels, 3, 3)
        exact = torch.linalg.matrix_norm(conv_matrix(weight, size), ord=2)
        bound = conv_operator_norm(weight, (size, size))
        assert exact <= bound * (1 + 1e-5)
        assert bound <= 1.25 * exact  # and close to it


def test_a_normalised_conv_layer_has_operator_norm_at_most_one_and_close_to_it():
    model = build_model("lipschitz-cnn", 2, 10, 8, channels=[4, 4, 4])
    conv = model.body.conv1
    norm = torch.linalg.matrix_norm(conv_matrix(conv.weight.detach(), 8), ord=2)
    assert 0.8 < norm <= 1 + 1e-5


def test_lipschitz_layers_start_orthogonal_with_zero_bias_as_deel_lip_does():
    torch.manual_seed(0)
    model = build_model("lipschitz-cnn", 2, 10, 16, channels=[4, 8, 8])
    for name in ("conv1", "conv2", "conv3", "fc"):
        layer = getattr(model.body, name)
        kernel = layer.parametrizations.weight.original.detach().flatten(1)  # out x in*kh*kw
        gram = kernel @ kernel.T if kernel.shape[0] <= kernel.shape[1] else kernel.T @ kernel
        torch.testing.assert_close(gram, torch.eye(len(gram)), atol=1e-5, rtol=0, msg=name)
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias)), name


def largest_lipschitz_ratios(model, size, generator):
    """Three empirical lower bounds on the model's L2 Lipschitz constant: the largest Jacobian spectral norm at random
    points, the largest ratio over random pairs, and the ratio after gradient ascent on pairs."""
    channels = model.in_channels
    points = torch.rand(8, channels, size, size, generator=generator)
    with torch.no_grad():
        jacobians = vmap(jacrev(lambda v: model(v.unsqueeze(0)).squeeze(0)))(points).reshape(8, 10, -1)
    jacobian_norm = torch.linalg.matrix_norm(jacobians, ord=2).max()

    def ratios(x, y):
        return (model(x) - model(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)

    x, y = torch.rand(2, 32, channels, size, size, generator=generator)
    with torch.no_grad():
        random_pairs = ratios(x, y).max()
    x, y = x.clone().requires_grad_(), (x + 0.05 * (y - x)).requires_grad_()
    optimizer = torch.optim.Adam([x, y], lr=0.02)
    for _ in range(10):
        loss = -ratios(x, y).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        ascended = ratios(x, y).max()
    return jacobian_norm, random_pairs, ascended


@pytest.mark.parametrize("activation", ["maxmin", "prelu"])
def test_lipschitz_cnn_never_exceeds_its_bound_at_init_and_after_training(activation):
    size = 12
    model = build_model("lipschitz-cnn", 2, 10, size, std=[0.5, 0.25], channels=[8, 8, 8], activation=activation)
    assert model.lipschitz_bound() == pytest.approx(4.0)  # 1 / min(std): the body is 1-Lipschitz
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for stage in ("init", "trained"):
        model.eval()
        jacobian_norm, random_pairs, ascended = largest_lipschitz_ratios(model, size, generator)
        assert max(jacobian_norm, random_pairs, ascended) <= model.lipschitz_bound() * (1 + 1e-4), stage
        assert ascended > random_pairs  # the ascent did search for a worst case
        model.train()
        for _ in range(3):
            loss = F.cross_entropy(model(torch.rand(16, 2, size, size, generator=generator)), torch.arange(16) % 10)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@pytest.mark.parametrize("activation", ["maxmin", "prelu"])
def test_every_layer_of_the_trained_lipschitz_cnn_has_jacobian_norm_at_most_one(activation):
    """For piecewise-linear layers the largest Jacobian norm is the Lipschitz constant, and the linear ones
    (convolutions, scaled pooling, dense) have one Jacobian everywhere. Each norm should be close to 1, not just below
    (the convolution bound is looser on small images, hence 16x16 inputs)."""
    model = build_model("lipschitz-cnn", 2, 10, 16, channels=[4, 4, 4], activation=activation)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = F.cross_entropy(model(torch.rand(16, 2, 16, 16)), torch.arange(16) % 10)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if activation == "prelu":
        model.body.act1.weight.data.fill_(-3.0)  # applied clamped to -1: a sign flip, norm exactly 1
    model.eval()
    x = model.normalize(torch.rand(1, 2, 16, 16))
    for name, layer in model.body.named_children():
        jacobian = torch.autograd.functional.jacobian(layer, x, vectorize=True).reshape(layer(x).numel(), x.numel())
        low = 0.75 if name == "conv3" else 0.8  # conv3 sees 4x4 images, where its norm bound is looser (~25%)
        assert low <= torch.linalg.matrix_norm(jacobian, ord=2) <= 1 + 1e-5, name
        x = layer(x)


# --- The loss 1-Lipschitz networks are trained with ------------------------------------------------------------------


def test_tau_cross_entropy_is_deel_torchlips_formula_and_plain_cross_entropy_at_tau_one():
    from xaitrust.training import TrainConfig
    from xaitrust.training.trainer import training_loss

    generator = torch.Generator().manual_seed(0)
    logits, y = torch.randn(12, 10, generator=generator), torch.arange(12) % 10
    tau = TrainConfig(loss="tau-cross-entropy", tau=8.0)
    # deel-torchlip's TauCrossEntropyLoss: CrossEntropyLoss()(input * tau, target) / tau
    assert training_loss(logits, y, tau) == pytest.approx(F.cross_entropy(logits * 8.0, y).item() / 8.0)
    assert training_loss(logits, y, TrainConfig()) == pytest.approx(F.cross_entropy(logits, y).item())
    assert training_loss(logits, y, TrainConfig(loss="tau-cross-entropy")) == training_loss(logits, y, TrainConfig())
    # large tau: the mean hinge on the margin max_j!=y z_j - z_y (0 where the margin is positive)
    margin = (logits.scatter(1, y[:, None], -torch.inf).amax(dim=1) - logits.gather(1, y[:, None])[:, 0]).clamp(min=0)
    assert training_loss(logits, y, TrainConfig(loss="tau-cross-entropy", tau=1e4)) == pytest.approx(
        margin.mean().item(), abs=1e-3)


@pytest.mark.parametrize("options, message", [
    ({"loss": "hinge"}, "loss must be one of cross-entropy, tau-cross-entropy; got 'hinge'"),
    ({"loss": "tau-cross-entropy", "tau": 0.0}, "tau must be a positive finite temperature; got 0.0"),
    ({"tau": 10.0}, "tau = 10.0 only applies to loss 'tau-cross-entropy'; set that loss or tau = 1"),
])
def test_bad_loss_options_are_refused(options, message):
    from xaitrust.training import TrainConfig

    with pytest.raises(XaitrustError, match=message):
        TrainConfig(**options)


def test_the_trainer_minimises_the_configured_loss(digits_data):
    """One full-batch step: the recorded training loss is the configured loss of the untrained model."""
    import copy

    from xaitrust.training import TrainConfig, train_model
    from xaitrust.training.trainer import training_loss

    train = digits_data[0].subset(torch.arange(64))
    for config in (TrainConfig(epochs=1, batch_size=64), TrainConfig(epochs=1, batch_size=64, loss="tau-cross-entropy",
                                                                      tau=20.0)):
        torch.manual_seed(0)
        model = build_model("lipschitz-cnn", 1, 10, 8, channels=[4, 4, 4], dropout=0.0)
        untrained = copy.deepcopy(model)
        untrained.set_normalization(train.mean, train.std)
        expected = training_loss(untrained(train.x), train.y, config).item()
        history = train_model(model, train, config, progress=False).history
        assert history[0]["train_loss"] == pytest.approx(expected, rel=1e-5), config.loss
