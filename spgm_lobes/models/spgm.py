"""SPGM: Single-Path Global Modulation blocks.

SPGM ("SPGM: Prioritizing local features for enhanced speech separation
performance", Yip et al., ICASSP 2024, arXiv:2309.12608) replaces every
inter-chunk transformer of a dual-path separator with a parameter-light block
that summarises the whole utterance in one vector and uses it to modulate the
features of every time step:

1. pool each chunk to one vector (last element, attention, mean or max);
2. average the chunk vectors into one global vector ``g`` per utterance;
3. ``x_out = sigmoid(W_s g) * x + (W_g g) * x`` (Eq. 1 of the paper).

The blocks here are drop-in ``inter_model`` s for
:class:`speechbrain.lobes.models.dual_path.Dual_Path_Model`, which hands its
inter model a tensor ``[B*K, S, N]`` (``K`` = chunk size, ``S`` = number of
chunks). Unlike the authors' published code, which pools over the flattened
``B*K`` axis and therefore mixes the utterances of a batch, pooling here is done
per utterance: a batch of equal-length mixtures gives each utterance exactly
the output it would get alone (the mask network takes no lengths, so the zero
padding of a shorter one enters its normalisation and attention, as in
SpeechBrain's Sepformer). At batch size 1 both formulations are identical, and the parameter
names match the published checkpoints (``s_lin``, ``g_lin``,
``pool.model.linear1``, ``pool.model.linear2``).

Authors
 * spgm-lobes contributors 2026
"""

import torch
from torch import nn

POOLING_METHODS = ("lem", "att", "avg", "max")


class LastElementPooling(nn.Module):
    """Summarises each chunk by its last time step ("LE" in the paper).

    Parameter-free.

    Example
    -------
    >>> pool = LastElementPooling()
    >>> x = torch.randn(2, 250, 10, 64)  # [B, K, S, N]
    >>> pool(x).shape
    torch.Size([2, 10, 64])
    """

    def forward(self, x):
        """Pools ``x`` of shape ``[B, K, S, N]`` into ``[B, S, N]``."""
        return x[:, -1]


class AveragePooling(nn.Module):
    """Summarises each chunk by the mean over its time steps.

    Example
    -------
    >>> pool = AveragePooling()
    >>> pool(torch.ones(1, 4, 3, 8)).shape
    torch.Size([1, 3, 8])
    """

    def forward(self, x):
        """Pools ``x`` of shape ``[B, K, S, N]`` into ``[B, S, N]``."""
        return x.mean(dim=1)


class MaxPooling(nn.Module):
    """Summarises each chunk by the element-wise maximum over its time steps.

    Example
    -------
    >>> pool = MaxPooling()
    >>> x = torch.zeros(1, 4, 3, 8)
    >>> x[0, 2] = 1.0
    >>> pool(x).sum().item()
    24.0
    """

    def forward(self, x):
        """Pools ``x`` of shape ``[B, K, S, N]`` into ``[B, S, N]``."""
        return x.amax(dim=1)


class AttentivePooling(nn.Module):
    """Summarises each chunk by an attention-weighted sum of its time steps
    ("AP" in the paper).

    A score is computed for every time step, soft-maxed over the ``K`` steps of
    the chunk, and used to weight the features. With ``att_h=None`` the scorer is
    a single ``Linear(N, 1)`` (``N + 1`` parameters, as in the paper); with
    ``att_h`` set it is ``Linear(N, h) -> ReLU -> Dropout -> Linear(h, 1)``.

    Arguments
    ---------
    d_input : int
        Feature dimension ``N``.
    att_h : int, optional
        Hidden size of the scorer; ``None`` for a single linear layer.
    att_dropout : float
        Dropout after the hidden layer (only used when ``att_h`` is set).

    Example
    -------
    >>> pool = AttentivePooling(64)
    >>> sum(p.numel() for p in pool.parameters())
    65
    >>> pool(torch.randn(2, 250, 10, 64)).shape
    torch.Size([2, 10, 64])
    """

    def __init__(self, d_input, att_h=None, att_dropout=0.0):
        super().__init__()
        if att_h is None:
            self.linear1 = nn.Linear(d_input, 1)
        else:
            self.linear1 = nn.Linear(d_input, att_h)
            self.dropout = nn.Dropout(att_dropout)
            self.linear2 = nn.Linear(att_h, 1)

    def scores(self, x):
        """Unnormalised attention score of every time step, ``[..., 1]``."""
        if not hasattr(self, "linear2"):
            return self.linear1(x)
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))

    def forward(self, x):
        """Pools ``x`` of shape ``[B, K, S, N]`` into ``[B, S, N]``."""
        weights = torch.softmax(self.scores(x), dim=1)  # [B, K, S, 1]
        return (weights * x).sum(dim=1)


class ChunkPooling(nn.Module):
    """Selects a within-chunk pooling method by name.

    The chosen pooling module is stored as ``self.model``, which gives the
    state-dict names of the published SPGM checkpoints
    (``pool.model.linear1.weight`` ...).

    Arguments
    ---------
    d_input : int
        Feature dimension ``N``.
    pool : str
        One of ``"lem"``, ``"att"``, ``"avg"``, ``"max"``.
    att_h : int, optional
        Hidden size of the attentive scorer (``pool="att"`` only).
    att_dropout : float
        Dropout of the attentive scorer (``pool="att"`` with ``att_h`` only).

    Example
    -------
    >>> ChunkPooling(64, "lem").model
    LastElementPooling()
    """

    def __init__(self, d_input, pool="att", att_h=None, att_dropout=0.0):
        super().__init__()
        if pool == "lem":
            self.model = LastElementPooling()
        elif pool == "att":
            self.model = AttentivePooling(d_input, att_h=att_h, att_dropout=att_dropout)
        elif pool == "avg":
            self.model = AveragePooling()
        elif pool == "max":
            self.model = MaxPooling()
        else:
            raise ValueError(f"Unknown SPGM pooling {pool!r}; choose one of {', '.join(POOLING_METHODS)}.")

    def forward(self, x):
        """Pools ``x`` of shape ``[B, K, S, N]`` into ``[B, S, N]``."""
        return self.model(x)


class SPGMBlock(nn.Module):
    """Single-Path Global Modulation block, a drop-in ``inter_model`` for
    SpeechBrain's ``Dual_Path_Model``.

    For every utterance of the batch, each chunk is pooled to one vector, the
    chunk vectors are averaged to a global vector ``g``, and the features are
    modulated with ``sigmoid(W_s g) * x + (W_g g) * x``.

    Arguments
    ---------
    n_embd : int
        Feature dimension ``N``.
    pool : str
        Within-chunk pooling: ``"lem"`` (last element), ``"att"`` (attentive),
        ``"avg"`` or ``"max"``.
    chunk_size : int
        Chunk length ``K`` of the dual-path model (its ``K`` argument); used to
        separate the utterances of the ``[B*K, S, N]`` input.
    att_h : int, optional
        Hidden size of the attentive scorer; ``None`` gives the paper's single
        ``Linear(N, 1)``.
    att_dropout : float
        Dropout of the attentive scorer with ``att_h``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import (
    ...     Dual_Path_Model, SBTransformerBlock)
    >>> intra = SBTransformerBlock(1, 64, 8)
    >>> inter = SPGMBlock(64, pool="att", chunk_size=20)
    >>> masknet = Dual_Path_Model(64, 64, intra, inter, num_layers=2, K=20)
    >>> masknet(torch.randn(3, 64, 100)).shape
    torch.Size([2, 3, 64, 100])
    >>> sorted(k for k in inter.state_dict())
    ['g_lin.bias', 'g_lin.weight', 'pool.model.linear1.bias', 'pool.model.linear1.weight', 's_lin.bias', 's_lin.weight']
    """

    def __init__(self, n_embd, pool="att", chunk_size=250, att_h=None, att_dropout=0.0):
        super().__init__()
        if int(chunk_size) <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        self.chunk_size = int(chunk_size)
        self.pool = ChunkPooling(n_embd, pool=pool, att_h=att_h, att_dropout=att_dropout)
        self.s_lin = nn.Linear(n_embd, n_embd)
        self.g_lin = nn.Linear(n_embd, n_embd)

    def global_vector(self, x):
        """Returns the global vector ``g`` of each utterance, ``[B, N]``, from
        features of shape ``[B, K, S, N]``."""
        return self.pool(x).mean(dim=1)

    def modulate(self, x, g):
        """Applies Eq. 1 to features ``[B, ..., N]`` with global vectors ``[B, N]``."""
        shape = (g.shape[0],) + (1,) * (x.dim() - 2) + (g.shape[1],)
        scale = torch.sigmoid(self.s_lin(g)).view(shape)
        shift = self.g_lin(g).view(shape)
        return scale * x + shift * x

    def forward(self, x):
        """Modulates ``x`` of shape ``[B*K, S, N]``; returns the same shape."""
        BK, S, N = x.shape
        if BK % self.chunk_size != 0:
            raise ValueError(
                f"SPGMBlock got an input with B*K = {BK} rows, which is not a multiple of "
                f"chunk_size = {self.chunk_size}; set chunk_size to the K of the Dual_Path_Model."
            )
        xb = x.view(BK // self.chunk_size, self.chunk_size, S, N)
        return self.modulate(xb, self.global_vector(xb)).view(BK, S, N)
