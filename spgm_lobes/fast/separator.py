"""Whole-input separation on a low-precision copy of a model (the fastest
inference path on a GPU).

:class:`CompiledSeparator` casts a copy of the encoder, mask network and
decoder to ``dtype`` (``torch.bfloat16`` by default) and runs the whole input
through :class:`~spgm_lobes.fast.FastMaskNet`, optionally with each dual-path
block under ``torch.compile``. Unlike autocast, every tensor stays in
``dtype``: parameters are not cast again at each call and the residual stream,
norms and masks move half the bytes. It is inference only. It holds a whole
layer's activations for the whole input at once (as the plain model does), so
inputs of many minutes belong to :func:`spgm_lobes.fast.separate`, whose
working memory does not grow with the number of chunks per slice.

With ``cuda_graphs=True`` (CUDA only) the whole forward pass of an input
shape is captured once in a CUDA graph and replayed: no per-kernel launch cost,
which matters most for short inputs. Capturing costs three passes and the graph
keeps its activations allocated, so only the graph of the last input shape is
kept: use it for repeated inputs of one length (streaming windows, benchmarks),
not for a folder of files of different lengths.

The original modules are left untouched (float32, trainable). The copy is made
again when their parameters or buffers have changed since (an optimizer step,
``load_state_dict``, a move to another device): each call compares the tensors'
version counters and storage addresses (tens of microseconds). A parameter
replaced by a new object is not seen: call :meth:`CompiledSeparator.refresh`.
"""

import copy

import torch

from .decoder import decode_sources, use_fast_decoder
from .masknet import FastMaskNet, unsupported_masknet_reason


class CompiledSeparator:
    """Separates ``[B, T]`` mixtures in one pass on a ``dtype`` copy of the modules.

    Arguments
    ---------
    encoder, masknet, decoder : torch.nn.Module
        SpeechBrain's ``Encoder``, ``Dual_Path_Model`` and ``Decoder`` (not modified).
    dtype : torch.dtype
        Dtype of the copy and of every computation (default ``torch.bfloat16``).
    compile : bool
        Run each dual-path block through ``torch.compile`` (GPU; the first call
        of each new input length compiles).
    cuda_graphs : bool
        Replay a CUDA graph of the whole pass for inputs of the last seen shape
        (CUDA inputs only; ignored on other devices).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder, Dual_Path_Model, SBTransformerBlock
    >>> from spgm_lobes.models import SPGMBlock
    >>> enc, dec = Encoder(16, 16), Decoder(16, 1, 16, stride=8, bias=False)
    >>> intra, inter = SBTransformerBlock(1, 16, 2, d_ffn=32), SPGMBlock(16, chunk_size=10)
    >>> mask = Dual_Path_Model(16, 16, intra, inter, K=10, linear_layer_after_inter_intra=False).eval()
    >>> separator = CompiledSeparator(enc, mask, dec, compile=False)
    >>> mix = torch.randn(2, 800)
    >>> est = separator(mix)
    >>> est.shape, est.dtype
    (torch.Size([2, 800, 2]), torch.float32)
    >>> reference = torch.stack([dec(enc(mix) * mask(enc(mix))[i]) for i in range(2)], -1)
    >>> bool((est - reference).norm() / reference.norm() < 0.05)  # bfloat16 rounding
    True
    """

    def __init__(self, encoder, masknet, decoder, dtype=torch.bfloat16, compile=False, cuda_graphs=False):
        reason = unsupported_masknet_reason(masknet)
        if reason is not None:
            raise ValueError(f"CompiledSeparator cannot run this mask network: {reason}.")
        self.dtype = dtype
        self.compile = bool(compile)
        self.cuda_graphs = bool(cuda_graphs)
        self._graph = None  # (shape, device, graph, static input, static output)
        self._sources = (encoder, masknet, decoder)
        self.refresh()

    def refresh(self):
        """Copies the current weights of the source modules again (done by
        itself when they change)."""
        encoder, masknet, decoder = (copy.deepcopy(m).to(self.dtype).eval() for m in self._sources)
        self.encoder = encoder
        self.decoder = use_fast_decoder({"decoder": decoder})["decoder"]
        self.masknet = FastMaskNet(masknet, compile=self.compile).eval()
        self._graph = None
        self._watched = [t for m in self._sources for t in (*m.parameters(), *m.buffers())]
        self._firsts = [next(iter(m.parameters())) for m in self._sources]
        self._stamp = self._source_stamp()

    def _source_stamp(self):
        """Version counters of the source parameters and buffers (in-place changes:
        optimizer steps, ``load_state_dict``) and the storage address of each
        module's first parameter (``.to(device)``); ~60 µs for SPGM-AP on a slow CPU."""
        return [t._version for t in self._watched], [t.data_ptr() for t in self._firsts]

    def __call__(self, mix):
        """``[B, T]`` float mixtures -> ``[B, T, num_spks]`` float32 estimates."""
        if mix.dim() != 2:
            raise ValueError(f"mix must be [B, T], got shape {tuple(mix.shape)}.")
        if self._source_stamp() != self._stamp:  # the source weights changed: copy them again
            self.refresh()
        if self.cuda_graphs and mix.is_cuda:
            return self._replay(mix)
        with torch.inference_mode():
            return self._forward(mix)

    def _forward(self, mix):
        w = self.encoder(mix.to(self.dtype))
        return decode_sources(self.decoder, w, self.masknet(w), mix.shape[1]).float()

    def _replay(self, mix):
        """The pass through the CUDA graph of ``mix``'s shape (captured on first use)."""
        key = (tuple(mix.shape), mix.device)
        if self._graph is None or self._graph[0] != key:
            self._graph = None  # free the previous graph's memory first
            torch.cuda.synchronize(mix.device)
            static_in = mix.detach().clone()
            side = torch.cuda.Stream(mix.device)
            side.wait_stream(torch.cuda.current_stream(mix.device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):  # compile and warm up outside the capture
                    self._forward(static_in)
            torch.cuda.current_stream(mix.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self._forward(static_in)
            self._graph = (key, graph, static_in, static_out)
        _, graph, static_in, static_out = self._graph
        static_in.copy_(mix)
        graph.replay()
        return static_out.clone()
