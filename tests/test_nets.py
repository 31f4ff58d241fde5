"""Networks (MLP, Nature CNN, noisy layers, dueling and categorical heads) and schedules."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from rlbook.nets import MLP, NatureCNN, NoisyLinear, QHead, clip_grad_norm, noisy_layers
from rlbook.schedules import ExponentialSchedule, LinearSchedule


def test_mlp_shapes_layers_and_int_input():
    net = MLP(4, 2, hidden=(16, 8))
    assert net(torch.zeros(5, 4)).shape == (5, 2)
    assert net(torch.zeros(5, 4, dtype=torch.int64)).dtype == torch.float32
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 16), (16, 8), (8, 2)]
    assert net.features_dim == 8
    linear = MLP(3, 1, hidden=())
    assert len([m for m in linear.modules() if isinstance(m, nn.Linear)]) == 1
    tanh = MLP(3, 1, hidden=(4,), activation=nn.Tanh)
    assert any(isinstance(m, nn.Tanh) for m in tanh.modules())


def test_mlp_errors():
    net = MLP(4, 2)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        net(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        net(torch.zeros(4))
    with pytest.raises(ValueError, match="in_dim"):
        MLP(0, 2)
    with pytest.raises(ValueError, match="hidden"):
        MLP(4, 2, hidden=(8, -1))


def test_nature_cnn_takes_uint8_frames_and_scales_them():
    torch.manual_seed(0)
    net = NatureCNN(in_channels=4, n_actions=6)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    q = net(frames)
    assert q.shape == (3, 6) and q.dtype == torch.float32
    # uint8 input is the same as the float input divided by 255
    torch.testing.assert_close(q, net(frames.float() / 255.0))
    # conv 8x8x4x32, 4x4x32x64, 3x3x64x64, dense 3136x512 and the head 512x6, each with biases
    by_hand = ((8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64)
               + (3136 * 512 + 512) + (512 * 6 + 6))
    assert sum(p.numel() for p in net.parameters()) == by_hand == 1_687_206


def test_nature_cnn_errors():
    net = NatureCNN(4, 6)
    with pytest.raises(ValueError, match=r"\(n, 4, 84, 84\)"):
        net(torch.zeros(2, 3, 84, 84, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(n, 4, 84, 84\)"):
        net(torch.zeros(4, 84, 84, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        net(torch.zeros(1, 4, 84, 84, dtype=torch.int32))
    with pytest.raises(ValueError, match="n_actions"):
        NatureCNN(4)
    with pytest.raises(ValueError, match="frame_size"):
        NatureCNN(4, 6, frame_size=20)


def test_nature_cnn_other_frame_sizes():
    assert NatureCNN(2, 3, frame_size=64)(torch.zeros(1, 2, 64, 64, dtype=torch.uint8)).shape == (1, 3)


def test_linear_schedule():
    s = LinearSchedule(1.0, 0.02, 100_000)
    assert s.value_at(0) == 1.0
    assert s.value_at(50_000) == pytest.approx(0.51)
    assert s.value_at(100_000) == 0.02 and s.value_at(10**9) == 0.02
    rising = LinearSchedule(0.4, 1.0, 10)
    assert rising(5) == pytest.approx(0.7) and rising(20) == 1.0
    assert LinearSchedule(1.0, 0.1, 0).value_at(0) == 0.1
    values = [s.value_at(t) for t in range(0, 120_000, 1000)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="duration"):
        LinearSchedule(1, 0, -5)
    with pytest.raises(ValueError, match="step"):
        s.value_at(-1)


def test_exponential_schedule():
    s = ExponentialSchedule(1.0, 0.05, half_life=1000)
    assert s.value_at(0) == pytest.approx(1.0)
    assert s.value_at(1000) == pytest.approx(0.05 + 0.95 / 2)
    assert s.value_at(3000) == pytest.approx(0.05 + 0.95 / 8)
    assert s.value_at(10**7) == pytest.approx(0.05)
    assert np.all(np.diff([s(t) for t in range(0, 5000, 100)]) < 0)
    with pytest.raises(ValueError, match="half_life"):
        ExponentialSchedule(1, 0, half_life=0)


def test_mlp_takes_float64_and_integer_inputs():
    net = MLP(3, 2, hidden=(4,))
    for dtype in (torch.float64, torch.int64, torch.float32):
        assert net(torch.zeros(5, 3, dtype=dtype)).dtype == torch.float32


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    nets = [MLP(4, 2, hidden=(16, 16)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(32, 4)
    for net in nets:
        (net(x) ** 2).sum().backward()
    expected = torch.nn.utils.clip_grad_norm_(nets[0].parameters(), max_norm)
    norm = clip_grad_norm(list(nets[1].parameters()), max_norm)
    assert torch.allclose(norm, expected)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-6, atol=1e-7)
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in nets[1].parameters()]))
    assert clipped <= max_norm * (1 + 1e-5)
    assert (clipped < norm).item() == (norm > max_norm).item()  # untouched below the threshold


# ---------------------------------------------------------------------- chapter 7: noisy layers and heads
def test_noisy_linear_initialisation():
    """Independent noise as in Fortunato et al. (sigma 0.017); factorized with the old text's sigma0 0.4 (the paper:
    0.5), both scaled as the paper scales them."""
    independent = NoisyLinear(100, 50, factorized=False, generator=torch.Generator().manual_seed(0))
    assert torch.all(independent.weight_sigma == 0.017) and torch.all(independent.bias_sigma == 0.017)
    bound = (3 / 100) ** 0.5
    assert independent.weight_mu.abs().max() <= bound and independent.weight_mu.abs().max() > 0.9 * bound
    factorized = NoisyLinear(100, 50, factorized=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(factorized.weight_sigma, torch.full((50, 100), 0.4 / 10))
    assert factorized.weight_mu.abs().max() <= 0.1 and factorized.weight_mu.abs().max() > 0.09
    assert factorized.signal_to_noise() == pytest.approx(
        float(torch.cat([factorized.weight_mu.flatten(), factorized.bias_mu]).detach().pow(2).mean().sqrt() / 0.04),
        rel=1e-5)


@pytest.mark.parametrize("factorized", [False, True])
def test_noisy_linear_draws_new_noise_each_forward_in_training_and_none_in_evaluation(factorized):
    layer = NoisyLinear(4, 3, factorized=factorized, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 4)
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)  # training mode: fresh noise every call
    layer.eval()
    mean = nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x), mean)
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    eps_w, eps_b = layer.noise()
    assert eps_w.shape == (3, 4) and eps_b.shape == (3,)
    if factorized:  # an outer product: rank one, and the bias noise is its output factor
        assert torch.linalg.matrix_rank(eps_w) == 1
        f_out = eps_b
        ratio = eps_w / f_out[:, None]
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    # gradients reach both the means and the noise scales
    layer(x).sum().backward()
    assert layer.weight_mu.grad.abs().sum() > 0 and layer.weight_sigma.grad.abs().sum() > 0


def test_noisy_noise_statistics():
    layer = NoisyLinear(30, 20, factorized=False, generator=torch.Generator().manual_seed(2))
    samples = torch.stack([layer.noise()[0] for _ in range(200)])
    assert samples.mean().abs() < 0.02 and (samples.std() - 1).abs() < 0.02
    fact = NoisyLinear(30, 20, factorized=True, generator=torch.Generator().manual_seed(2))
    w = torch.stack([fact.noise()[0] for _ in range(400)])
    # f(x) = sign(x) sqrt|x| of two standard normals: E[|x|] = sqrt(2 / pi), so E[w^2] = (2 / pi)
    assert (w.pow(2).mean() - 2 / np.pi).abs() < 0.03


def test_dueling_head_is_value_plus_centred_advantage():
    head = QHead(8, n_actions=3, dueling=True)
    features = torch.randn(6, 8)
    q = head(features)
    value = head.value(features)
    advantage = head.advantage(features)
    torch.testing.assert_close(q, value + advantage - advantage.mean(dim=1, keepdim=True))
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)  # the mean over actions is V(s)
    assert QHead(8, 3)(features).shape == (6, 3)


def test_categorical_heads_give_logits_per_action_and_atom():
    for dueling in (False, True):
        head = QHead(8, n_actions=3, dueling=dueling, atoms=51)
        out = head(torch.randn(4, 8))
        assert out.shape == (4, 3, 51)
    dueling = QHead(8, n_actions=3, dueling=True, atoms=5)
    f = torch.randn(2, 8)
    v = dueling.value(f).view(2, 1, 5)
    a = dueling.advantage(f).view(2, 3, 5)
    torch.testing.assert_close(dueling(f), v + a - a.mean(dim=1, keepdim=True))


def test_networks_take_noisy_layers_everywhere_after_the_convolutions():
    noisy = functools.partial(NoisyLinear, factorized=True)
    mlp = MLP(4, 2, hidden=(16, 8), linear=noisy)
    assert [name for name, _ in noisy_layers(mlp)] == ["torso.0", "torso.2", "head"]
    plain_input = MLP(4, 2, hidden=(16, 8), linear=noisy, input_linear=torch.nn.Linear)  # as DQN builds it
    assert [name for name, _ in noisy_layers(plain_input)] == ["torso.2", "head"]
    assert type(plain_input.torso[0]) is torch.nn.Linear
    cnn = NatureCNN(4, 6, linear=noisy)
    cnn.head = QHead(512, 6, dueling=True, linear=noisy)
    assert [name for name, _ in noisy_layers(cnn)] == ["torso.7", "head.value", "head.advantage"]
    frames = torch.zeros(2, 4, 84, 84, dtype=torch.uint8)
    assert cnn(frames).shape == (2, 6)


@pytest.mark.parametrize("factorized", [True, False])
def test_noisy_forward_is_mean_plus_scale_times_the_drawn_noise(factorized):
    # The same generator state gives the same noise: the training forward pass must be exactly
    # (mu_W + sigma_W * eps_W) x + mu_b + sigma_b * eps_b with the eps that noise() draws.
    gen = torch.Generator().manual_seed(3)
    layer = NoisyLinear(5, 4, factorized=factorized, sigma0=0.5, generator=gen)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    state = gen.get_state()
    eps_w, eps_b = layer.noise()
    gen.set_state(state)
    with torch.no_grad():
        want = x @ (layer.weight_mu + layer.weight_sigma * eps_w).T + layer.bias_mu + layer.bias_sigma * eps_b
        torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize("factorized", [True, False])
def test_noisy_means_start_spread_over_their_whole_interval(factorized):
    layer = NoisyLinear(64, 64, factorized=factorized, generator=torch.Generator().manual_seed(0))
    bound = 1 / 8 if factorized else (3 / 64) ** 0.5
    for mu in (layer.weight_mu, layer.bias_mu):
        assert mu.min() >= -bound and mu.max() <= bound
        assert mu.min() < -bound / 2 and mu.max() > bound / 2  # both signs, not a constant


def test_conv1d_net_shapes_padding_and_errors():
    from rlbook.nets import Conv1dNet

    net = Conv1dNet(5, 50, 3, channels=(8, 4), kernel=5, hidden=(16,))
    assert net(torch.zeros(2, 5, 50)).shape == (2, 3)
    assert net(torch.zeros(2, 5, 50, dtype=torch.float64)).dtype == torch.float32
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in convs] == [
        (5, 8, (5,), (2,)), (8, 4, (5,), (2,))]
    assert net.torso[-2].in_features == 4 * 50  # the padding keeps the length
    assert net.features_dim == 16
    with pytest.raises(ValueError, match=r"\(n, 5, 50\)"):
        net(torch.zeros(2, 5, 49))
    with pytest.raises(ValueError, match="odd"):
        Conv1dNet(5, 50, 3, kernel=4)
    with pytest.raises(ValueError, match="channels"):
        Conv1dNet(5, 50, 3, channels=())


def test_conv1d_net_sees_a_pattern_wherever_it_is_in_the_window():
    """Shift-equivariance of the convolutions: a spike moved along the window moves the conv features with it."""
    from rlbook.nets import Conv1dNet

    torch.manual_seed(0)
    net = Conv1dNet(1, 20, 2, channels=(3,), kernel=3, hidden=())
    x = torch.zeros(2, 1, 20)
    x[0, 0, 5], x[1, 0, 9] = 1.0, 1.0
    features = net.torso[:-1](x)  # before the flatten
    torch.testing.assert_close(features[0, :, 3:8], features[1, :, 7:12])


def test_conv1d_net_smallest_sizes_work_and_zero_sizes_are_refused():
    from rlbook.nets import Conv1dNet

    tiny = Conv1dNet(1, 1, 1, channels=(1,), kernel=1, hidden=(1,))  # every size at its minimum, 1
    assert tiny(torch.zeros(2, 1, 1)).shape == (2, 1)
    good = dict(in_channels=2, length=3, n_actions=2, channels=(2,), kernel=3, hidden=(2,))
    for field, bad, words in (("in_channels", 0, "in_channels"), ("length", 0, "length"),
                              ("n_actions", 0, "n_actions"), ("kernel", -1, "kernel"),
                              ("channels", (2, 0), r"channels\[1\]"), ("hidden", (0,), r"hidden\[0\]")):
        with pytest.raises(ValueError, match=words):
            Conv1dNet(**{**good, field: bad})
