import numpy as np
import pytest
import torch

from clips.losses import LossWeights, TMTVLoss, mumford_shah_loss
from clips.models import SegNet


def _two_region_image():
    img = torch.zeros(1, 1, 8, 8, 8)
    img[..., 4:] = 1.0
    truth = torch.zeros(1, 2, 8, 8, 8)
    truth[:, 1, ..., 4:] = 1.0
    truth[:, 0] = 1 - truth[:, 1]
    return img, truth


def test_mumford_shah_known_answers():
    img, truth = _two_region_image()
    # Perfect partition of a piecewise-constant image: no fidelity cost, only the boundary.
    ms = mumford_shah_loss(truth, img, eta=1.0)
    boundary = 2 * 8 * 8  # one face of 8x8 voxels, once per class
    assert ms.item() == pytest.approx(boundary, rel=1e-5)
    assert mumford_shah_loss(truth, img, eta=0.0).item() == pytest.approx(0.0, abs=1e-4)
    # A flat partition: each class centroid is the mean 0.5, the cost is the variance times the class mass.
    flat = torch.full_like(truth, 0.5)
    expected = 2 * (0.25 * 0.5 * 512)
    assert mumford_shah_loss(flat, img, eta=1.0).item() == pytest.approx(expected, rel=1e-5)
    # A wrong partition costs more than the right one.
    wrong = truth.roll(2, dims=-1)
    assert mumford_shah_loss(wrong, img).item() > ms.item()


def test_per_sample_finite_and_gradients_flow():
    torch.manual_seed(0)
    loss_fn = TMTVLoss(LossWeights())
    logits = torch.randn(3, 2, 16, 16, 16, requires_grad=True)
    target = (torch.rand(3, 1, 16, 16, 16) > 0.9).long()
    target[2] = 0  # a patch without lesion
    image = torch.rand(3, 5, 16, 16, 16)
    terms = loss_fn(logits, target, image)
    assert terms["total"].shape == (3,) and torch.isfinite(terms["total"]).all()
    expected = 1e-5 * terms["ms"] + 1.0 * terms["dice"] + 2.0 * terms["ce"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # Each sample's loss depends only on its own inputs.
    alone = loss_fn(logits[1:2].detach(), target[1:2], image[1:2])["total"]
    assert alone.item() == pytest.approx(terms["total"][1].item(), rel=1e-5)


def test_deep_supervision_combines_heads():
    loss_fn = TMTVLoss()
    target = (torch.rand(2, 1, 8, 8, 8) > 0.8).long()
    image = torch.rand(2, 5, 8, 8, 8)
    heads = torch.randn(2, 3, 2, 8, 8, 8)
    single = [loss_fn(heads[:, i], target, image)["total"] for i in range(3)]
    w = np.array([1, 0.5, 0.25]) / 1.75
    combined = loss_fn(heads, target, image)["total"]
    assert torch.allclose(combined, sum(float(w[i]) * single[i] for i in range(3)), rtol=1e-5)


def test_better_prediction_lower_loss():
    target = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    target[..., 2:6, 2:6, 2:6] = 1
    image = torch.rand(1, 5, 8, 8, 8)
    good = torch.stack([1 - target[:, 0].float(), target[:, 0].float()], 1) * 8 - 4
    loss_fn = TMTVLoss()
    assert loss_fn(good, target, image)["total"] < loss_fn(-good, target, image)["total"]


@pytest.mark.parametrize("shape", [(48, 48, 48), (37, 21, 19), (9, 70, 13)])
def test_network_runs_on_any_size(shape):
    net = SegNet("tiny")
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 5, *shape))
    assert out.shape == (1, 2, *shape)
    net.train()
    assert net(torch.rand(2, 5, 16, 16, 16)).shape == (2, 3, 2, 16, 16, 16)


def test_large_preset_has_the_released_channel_widths_and_no_longer_claims_the_name():
    from clips.config import build_config
    from clips.errors import ConfigError

    net = SegNet("large")
    assert list(net.unet.filters) == [64, 96, 128, 156]
    with pytest.raises(ConfigError, match="'tmtv_net' is now 'large'.*not the released TMTV-Net"):
        build_config({"model": "tmtv_net"})
