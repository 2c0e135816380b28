import copy

import pytest
import torch
from speechbrain.lobes.models.dual_path import Dual_Path_Model, SBTransformerBlock

from spgm_lobes import AttentivePooling, IdentityInterBlock, SPGMBlock

POOLS = ["lem", "att", "avg", "max"]


def published_eq1(block, x):
    """Eq. 1 as the authors' code computes it: pooling over the flattened
    B*K axis (correct only for B = 1). Written independently for the test."""
    if block.pool.model.__class__.__name__ == "LastElementPooling":
        per_chunk = x[-1]
    elif block.pool.model.__class__.__name__ == "AveragePooling":
        per_chunk = x.mean(0)
    elif block.pool.model.__class__.__name__ == "MaxPooling":
        per_chunk = x.max(0).values
    else:
        att = block.pool.model
        logits = att.linear1(x)
        if hasattr(att, "linear2"):
            logits = att.linear2(torch.relu(logits))
        per_chunk = (torch.softmax(logits, dim=0) * x).sum(0)
    g = per_chunk.mean(0)
    return torch.sigmoid(block.s_lin(g)) * x + block.g_lin(g) * x


@pytest.mark.parametrize("pool", POOLS)
def test_shape_preserved(pool):
    block = SPGMBlock(16, pool=pool, chunk_size=5)
    x = torch.randn(3 * 5, 7, 16)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("pool", POOLS + ["att_h"])
def test_batch_independence(pool):
    kwargs = {"pool": "att", "att_h": 8} if pool == "att_h" else {"pool": pool}
    block = SPGMBlock(16, chunk_size=5, **kwargs).eval()
    utterances = [torch.randn(5, 7, 16) * (i + 1) for i in range(4)]
    batched = block(torch.cat(utterances, dim=0)).view(4, 5, 7, 16)
    for i, utt in enumerate(utterances):
        torch.testing.assert_close(batched[i], block(utt), atol=1e-5, rtol=0)


@pytest.mark.parametrize("pool", POOLS + ["att_h"])
def test_batch_one_equals_published_formulation(pool):
    kwargs = {"pool": "att", "att_h": 8} if pool == "att_h" else {"pool": pool}
    block = SPGMBlock(16, chunk_size=6, **kwargs).eval()
    x = torch.randn(6, 9, 16)
    assert (block(x) - published_eq1(block, x)).abs().max() < 1e-5


def test_published_formulation_mixes_utterances_but_ours_does_not():
    block = SPGMBlock(16, pool="avg", chunk_size=5)
    a, b = torch.randn(5, 3, 16), 10 * torch.randn(5, 3, 16)
    ours = block(torch.cat([a, b]))[:5]
    published = published_eq1(block, torch.cat([a, b]))[:5]
    torch.testing.assert_close(ours, block(a))
    assert (published - block(a)).abs().max() > 1e-3


def test_eq1_by_hand():
    block = SPGMBlock(2, pool="lem", chunk_size=2)
    with torch.no_grad():
        block.s_lin.weight.copy_(torch.eye(2))
        block.s_lin.bias.zero_()
        block.g_lin.weight.copy_(2 * torch.eye(2))
        block.g_lin.bias.fill_(1.0)
    x = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]])  # K=2, S=1: last element g = [3, -1]
    g = torch.tensor([3.0, -1.0])
    expected = torch.sigmoid(g) * x + (2 * g + 1) * x
    torch.testing.assert_close(block(x), expected)


def test_state_dict_names_match_published_checkpoints():
    assert set(SPGMBlock(8, pool="att").state_dict()) == {
        "s_lin.weight",
        "s_lin.bias",
        "g_lin.weight",
        "g_lin.bias",
        "pool.model.linear1.weight",
        "pool.model.linear1.bias",
    }
    assert set(SPGMBlock(8, pool="att", att_h=4).state_dict()) == {
        "s_lin.weight",
        "s_lin.bias",
        "g_lin.weight",
        "g_lin.bias",
        "pool.model.linear1.weight",
        "pool.model.linear1.bias",
        "pool.model.linear2.weight",
        "pool.model.linear2.bias",
    }
    assert set(SPGMBlock(8, pool="lem").state_dict()) == {
        "s_lin.weight",
        "s_lin.bias",
        "g_lin.weight",
        "g_lin.bias",
    }


def test_published_style_state_dict_loads_strict():
    n = 8
    published = {
        "s_lin.weight": torch.randn(n, n),
        "s_lin.bias": torch.randn(n),
        "g_lin.weight": torch.randn(n, n),
        "g_lin.bias": torch.randn(n),
        "pool.model.linear1.weight": torch.randn(1, n),
        "pool.model.linear1.bias": torch.randn(1),
    }
    block = SPGMBlock(n, pool="att")
    block.load_state_dict(published, strict=True)
    torch.testing.assert_close(block.pool.model.linear1.weight, published["pool.model.linear1.weight"])


def test_attentive_pooling_has_n_plus_one_parameters():
    assert sum(p.numel() for p in AttentivePooling(256).parameters()) == 257


def test_spgm_block_parameter_count():
    # Two N x N linear layers (+ biases) and the N+1 attentive scorer.
    n = 256
    assert sum(p.numel() for p in SPGMBlock(n, pool="att").parameters()) == 2 * (n * n + n) + n + 1
    assert sum(p.numel() for p in SPGMBlock(n, pool="lem").parameters()) == 2 * (n * n + n)


def test_bad_chunk_multiple_raises():
    block = SPGMBlock(8, chunk_size=5)
    with pytest.raises(ValueError, match="chunk_size = 5"):
        block(torch.randn(12, 3, 8))


@pytest.mark.parametrize("bad", ["mean", "", "ATT"])
def test_unknown_pool_raises(bad):
    with pytest.raises(ValueError, match="Unknown SPGM pooling"):
        SPGMBlock(8, pool=bad)


def test_bad_chunk_size_raises():
    with pytest.raises(ValueError, match="chunk_size"):
        SPGMBlock(8, chunk_size=0)


@pytest.mark.parametrize("pool", POOLS)
def test_batch_independence_inside_dual_path_model(pool):
    K = 10
    masknet = Dual_Path_Model(
        16,
        16,
        SBTransformerBlock(1, 16, 4, d_ffn=32, dropout=0.0),
        SPGMBlock(16, pool=pool, chunk_size=K),
        num_layers=2,
        K=K,
        linear_layer_after_inter_intra=False,
    ).eval()
    x = torch.randn(3, 16, 57)
    with torch.no_grad():
        batched = masknet(x)
        for i in range(3):
            torch.testing.assert_close(batched[:, i : i + 1], masknet(x[i : i + 1]), atol=1e-5, rtol=1e-5)


def test_identity_inter_block_is_a_module_and_deep_copies():
    block = IdentityInterBlock()
    assert isinstance(block, torch.nn.Module)
    x = torch.randn(4, 3, 2)
    assert copy.deepcopy(block)(x) is x
    assert list(block.parameters()) == []
