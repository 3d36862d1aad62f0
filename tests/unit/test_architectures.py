import torch

from model.architectures import EdgeCNN, EdgeNet, count_macs, count_parameters


def test_edgecnn_matches_its_description():
    assert count_parameters(EdgeCNN()) == 169_550


def test_edgenet_default_fits_the_budget():
    net = EdgeNet()
    assert count_parameters(net) <= 170_000
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 62)


def test_macs_count_a_known_layer():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))
    assert count_macs(conv) == 28 * 28 * 2 * 9
