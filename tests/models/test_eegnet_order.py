"""EEGNet trains with space filtered before time (``EEGNetFeatures.forward``): the same function, gradients and
BatchNorm running statistics as the layers as written (``time_first``), in training and in evaluation."""

import copy

import pytest
import torch

from models.eegnet import EEGNet


def _pair(**params):
    torch.manual_seed(0)
    net = EEGNet(n_chans=12, n_times=100, n_outputs=3, sfreq=100.0, dropout=0.0, **params)
    with torch.no_grad():  # BatchNorm away from its identity start, so its parameters matter
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return net, copy.deepcopy(net)


def _grads(net, loss):
    net.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize("params", [{}, {"kernel_seconds": 0.25}, {"kernel_seconds": 0.31, "D": 1, "F1": 4},
                                    {"batch_norm_momentum": 0.01, "batch_norm_eps": 1e-3}])
@pytest.mark.parametrize("offset", [0.0, 3.0])  # a DC offset: the batch variance must not cancel away
def test_training_step_equals_the_time_first_layers(params, offset):
    ours, reference = _pair(**params)
    x = torch.randn(16, 12, 100) + offset
    target = torch.randint(0, 3, (16,))
    out, expected = ours.body(x), reference.body.time_first(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    grads = _grads(ours, torch.nn.functional.cross_entropy(ours.classifier(out.flatten(1)), target))
    grads_ref = _grads(reference, torch.nn.functional.cross_entropy(reference.classifier(expected.flatten(1)), target))
    scale = max(g.abs().max().item() for g in grads_ref.values())
    for name, g in grads.items():  # (bn1's bias has no effect through bn2's batch mean: both ~0)
        torch.testing.assert_close(g, grads_ref[name], rtol=1e-3, atol=1e-5 * scale, msg=name)
    assert grads["body.block1.1.weight"].abs().max() > 1e-3 * scale  # the temporal filters do learn
    for (name, a), b in zip(ours.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)  # running mean / var, batches seen


def test_evaluation_and_input_gradients_equal_the_time_first_layers():
    ours, reference = _pair()
    ours.eval()
    reference.eval()
    x = torch.randn(4, 12, 100, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = ours.body(x), reference.body.time_first(x_ref)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-3, atol=1e-5 * x_ref.grad.abs().max().item())
    ours.train()
    reference.train()  # a learned layer before EEGNet: the batch statistics carry the input's gradient too
    x.grad = x_ref.grad = None
    ours.body(x).square().sum().backward()
    reference.body.time_first(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-3, atol=1e-4 * x_ref.grad.abs().max().item())


def test_cumulative_running_statistics_without_momentum():
    ours, reference = _pair()
    for net in (ours, reference):
        net.body.block1[2].momentum = None
    for _ in range(3):
        x = torch.randn(8, 12, 100)
        ours.body(x)
        reference.body.time_first(x)
    bn, bn_ref = ours.body.block1[2], reference.body.block1[2]
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, rtol=1e-4, atol=1e-6)
    assert int(bn.num_batches_tracked) == int(bn_ref.num_batches_tracked) == 3


def test_batch_statistics_stay_exact_under_bf16_autocast():
    """Mixed precision (bf16 autocast, the GPU default) must not compute the batch variance from bf16 sums of
    squares: the output stays within bf16's rounding of the float32 layers."""
    ours, reference = _pair()
    x = torch.randn(16, 12, 100) + 3.0
    expected = reference.body.time_first(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours.body(x).float()
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())
    torch.testing.assert_close(ours.body.block1[2].running_var, reference.body.block1[2].running_var, rtol=1e-4, atol=1e-6)


def test_eeg_tcnet_front_end_trains_the_same_way():
    from models.tcn import EEGTCNet

    torch.manual_seed(0)
    net = EEGTCNet(n_chans=12, n_times=100, n_outputs=3, sfreq=100.0)
    reference = copy.deepcopy(net)
    x = torch.randn(8, 12, 100)
    torch.manual_seed(1)  # the same dropout masks on both sides
    expected = reference.front.time_first(x)
    torch.manual_seed(1)
    torch.testing.assert_close(net.front(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
