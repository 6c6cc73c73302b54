"""Two detector runs combined at the cost of one net with the mirror pass: a weight soup, or a pair (the second
net makes the mirror pass)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch  # the train extra (`make test` installs it)

from training.detector.model import Exportable, HeadNet, soup
from training.detector.quantize import export_checkpoint


def _net(seed: int) -> HeadNet:
    torch.manual_seed(seed)
    net = HeadNet(w=(8, 8, 16, 16, 16), fpn=16)
    with torch.no_grad():  # random BN statistics too, so that they are averaged like the weights
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(seed + 1)
    return net.eval()


def _mirror(rows: np.ndarray, width: int) -> np.ndarray:
    """Boxes x1, y1, x2, y2, score of a picture -> the same boxes on its mirror image."""
    out = rows.copy()
    out[:, 0], out[:, 2] = width - rows[:, 2], width - rows[:, 0]
    return out


def _same_rows(a: np.ndarray, b: np.ndarray, atol: float = 1e-4) -> bool:
    """The same set of rows, in any order."""
    return a.shape == b.shape and bool((np.abs(a[:, None] - b[None]).max(-1).min(1) < atol).all())


def test_soup_is_the_mean_of_the_weights_and_statistics():
    a, b = _net(0).state_dict(), _net(1).state_dict()
    s = soup([a, b])
    assert set(s) == set(a)
    for k, v in s.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k] + b[k]) / 2)
        else:  # the batch counters are not averaged
            assert torch.equal(v, a[k])
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    same = soup([a, a])
    assert all(torch.equal(same[k], a[k]) for k in a)


def test_pair_runs_the_second_net_on_the_mirror_image():
    a, b = _net(0), _net(1)
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ab, ba = Exportable(a, topk=50, mirror_net=b)(x)[0].numpy(), Exportable(b, topk=50, mirror_net=a)(x)[0].numpy()
        ab_mirrored = Exportable(a, topk=50, mirror_net=b)(torch.flip(x, dims=[3]))[0].numpy()
        flip = Exportable(a, topk=50, flip=True)(x)[0].numpy()
        self_pair = Exportable(a, topk=50, mirror_net=a)(x)[0].numpy()
    # (A on the picture, B on its mirror) of the mirror image is (B on the picture, A on its mirror), mirrored
    assert _same_rows(ab_mirrored, _mirror(ba, 128))
    assert not _same_rows(ab_mirrored, _mirror(ab, 128))
    assert not np.allclose(np.sort(ab[:, 4]), np.sort(flip[:, 4]))  # the second net changes the scores
    np.testing.assert_allclose(self_pair, flip, atol=1e-6)  # a net paired with itself is the mirror pass


def test_checkpoints_export_as_a_soup_or_a_pair(tmp_path):
    torch.manual_seed(0)
    nets = [HeadNet().eval(), HeadNet().eval()]
    for i, n in enumerate(nets):
        with torch.no_grad():
            n.cls.weight.normal_(0, 0.5)  # scores far apart, so the top-k order is stable
            n.cls.bias.fill_(-2.0 + i)
        torch.save(n.state_dict(), tmp_path / f"{i}.pt")
    x = np.random.default_rng(0).random((1, 3, 192, 160), np.float32)

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0][0]

    export_checkpoint(tmp_path / "0.pt", tmp_path / "soup.onnx", flip=True, soup_with=tmp_path / "1.pt")
    export_checkpoint(tmp_path / "0.pt", tmp_path / "pair.onnx", pair_with=tmp_path / "1.pt")
    mean = HeadNet().eval()
    mean.load_state_dict(soup([n.state_dict() for n in nets]))
    with torch.no_grad():
        want_soup = Exportable(mean, flip=True)(torch.from_numpy(x))[0].numpy()
        want_pair = Exportable(nets[0], mirror_net=nets[1])(torch.from_numpy(x))[0].numpy()
    for got, want in ((run(tmp_path / "soup.onnx"), want_soup), (run(tmp_path / "pair.onnx"), want_pair)):
        np.testing.assert_allclose(got[:, 4], want[:, 4], atol=1e-5)  # the top-k scores, in order
        assert _same_rows(got[:20], want[:20], atol=1e-3)  # and their boxes (near-equal scores may swap places)
    assert not np.allclose(want_soup[:, 4], want_pair[:, 4])
