import torch
from speechbrain.augment.time_domain import SpeedPerturb

from spgm_lobes.dsp import random_crop, speed_perturb_sources


def test_speed_perturbation_range_and_resummed_mixture():
    sp = SpeedPerturb(8000, speeds=[95, 100, 105])
    T = 8000
    ratios = set()
    for seed in range(12):
        torch.manual_seed(seed)
        targets = torch.randn(2, T, 2)
        per_source = []
        for i in range(2):
            per_source.append(sp(targets[..., i]).shape[1] / T)
        ratios.update(round(r, 2) for r in per_source)
        mix, out = speed_perturb_sources(targets, sp)
        assert torch.allclose(mix, out.sum(-1))
        assert 0.95 * T - 2 <= out.shape[1] <= T / 0.95 + 2
    # speeds 95/100/105 % give lengths T/0.95, T, T/1.05
    assert ratios <= {round(1 / 0.95, 2), 1.0, round(1 / 1.05, 2)}
    assert len(ratios) == 3


def test_sources_are_perturbed_independently():
    sp = SpeedPerturb(8000, speeds=[95, 105])
    seen_different = False
    for seed in range(20):
        torch.manual_seed(seed)
        calls = []

        def recording(x):
            y = sp(x)
            calls.append(y.shape[1])
            return y

        speed_perturb_sources(torch.randn(1, 4000, 2), recording)
        seen_different |= calls[0] != calls[1]
    assert seen_different


def test_random_crop_keeps_real_samples_in_every_utterance():
    mix = torch.randn(2, 1000)
    targets = torch.randn(2, 1000, 2)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        m, t, lens = random_crop(mix, targets, 300, torch.tensor([1.0, 0.4]), generator=g)
        assert m.shape == (2, 300) and t.shape == (2, 300, 2)
        assert (lens > 0).all() and (lens <= 1).all()
