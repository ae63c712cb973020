"""Fixed-shape decoding over a ``RowKVCache``: a token, or a whole imagined step, per call.

Decoding one token at a time is bound by per-op overhead, not by arithmetic: at the study's sizes
a token costs a few hundred small tensor ops, each far cheaper to compute than to launch. This
step removes the reasons the eager path cannot be captured: every call has the same shapes (it
attends over the cache's full capacity, masking the columns a row does not own, instead of over
the first ``length`` columns), the write column is a device tensor rather than a Python int, and
nothing in it asks the host for a value. So it can be compiled once (``torch.compile``, CPU or
GPU) or captured once as a CUDA graph and replayed for every token.

The keys and values it writes, and the hidden state it returns, are those of ``row_forward``
feeding one token at the shared column; only the reduction over the masked-out columns differs in
rounding (a masked key adds an exact zero), so greedy and seeded sampling give the same tokens.
Sampling stays on the device: the caller draws the uniforms with its random generator, and
:func:`~worldmodels.decode_math.sample_image_ids` turns them into ids (the Gumbel-max trick).

``DecodeStep.frame`` decodes a whole imagined step (the action tokens, then the frame's image
tokens, sampled in between) in one call: compiled on a CPU, where at batch 1 calling a compiled
token step 17 times cost more than its arithmetic.

Example:
    >>> from worldmodels.gpt import GPT, GPTConfig
    >>> from worldmodels.row_cache import RowKVCache, rebuild
    >>> gpt = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=16, vocab_size=10)).eval()
    >>> cache = RowKVCache(gpt, batch_size=2, capacity=16)
    >>> _ = rebuild(gpt, cache, [torch.tensor([1, 2, 3]), torch.tensor([4])])
    >>> step = DecodeStep(gpt, cache, mode="eager")
    >>> tuple(step(torch.tensor([5, 6])).shape), cache.length
    ((2, 8), 4)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import warnings

import torch

from worldmodels.decode_attention import DEFAULT_CONFIG, KernelConfig, check_config
from worldmodels.decode_attention import available as decode_attention_available
from worldmodels.decode_attention import load as load_decode_attention
from worldmodels.decode_math import decode_frame, decode_one, decode_weights, sample_frame
from worldmodels.gpt import GPT
from worldmodels.row_cache import RowKVCache

logger = logging.getLogger(__name__)

DECODE_MODES = ("auto", "eager", "compile", "cuda-graph")
ATTENTIONS = ("sdpa", "reductions", "triton")


def _cpp_wrapper() -> contextlib.AbstractContextManager:
    """Inductor settings under which a first call compiles with a C++ wrapper."""
    import torch._inductor.config as inductor_config  # loads the compiler: only when compiling

    return inductor_config.patch(cpp_wrapper=True)


def check_attention(attention: str, device: torch.device) -> None:
    """Raise a ``ValueError`` naming the fix if a decode step cannot attend this way here."""
    if attention not in ATTENTIONS:
        raise ValueError(f"decode attention must be one of {ATTENTIONS}, got {attention!r}")
    if attention == "triton" and not decode_attention_available(device):
        raise ValueError(f"decode attention 'triton' needs a CUDA device and the triton package "
                         f"(the model is on {device}); use 'reductions' or 'sdpa', or install "
                         "triton")


def resolve_decode_mode(mode: str, device: torch.device) -> str:
    """The mode ``auto`` stands for on ``device`` (a CUDA graph on GPU, compiled on CPU)."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    if mode == "auto":
        return "cuda-graph" if device.type == "cuda" else "compile"
    if mode == "cuda-graph" and device.type != "cuda":
        raise ValueError(f"decode mode 'cuda-graph' needs a CUDA device, the model is on {device}; "
                         "use 'compile' or 'eager'")
    return mode


class DecodeStep:
    """Callable ``step(token_ids (B,)) -> hidden (B, E)`` appending one token to every row.

    Args:
        gpt: the model (in eval mode).
        cache: the row cache it extends; its tensors are used in place, never reallocated.
        mode: ``eager``; ``compile`` (``torch.compile``, compiled on the first call);
            ``cuda-graph`` (captured on the first call, replayed after); ``auto``: a CUDA graph on
            GPU, compiled on CPU.
        autocast: a ``torch.autocast`` context the step runs under (bf16 with a bf16 cache;
            made with ``cache_enabled=False`` for a CUDA graph); None runs in the model's dtype.
        compile_after: in ``auto`` mode on CPU, tokens decoded eagerly before compiling (a
            compilation takes tens of seconds, so short runs and tests never pay for it).
        attention: how a token attends (``decode_one``'s ``attention``): ``sdpa``,
            ``reductions`` or ``triton`` (a split-K kernel reading only the owned columns; CUDA
            with Triton installed). None: ``reductions`` when compiled or captured, else
            ``sdpa``.
        widths: how many fixed widths of the cache a token step may attend over (None: 4 for a
            CUDA graph with ``reductions``, else 1). With more than one, a token attends over
            the first ``w`` columns for the smallest width ``w`` that holds its column, instead
            of over the whole capacity: a few shapes (one CUDA graph each) instead of one, and a
            cache read that follows the context's length. At large batch the step reads the
            whole cache once per token per layer, so this is where its time goes (``triton``
            reads only the owned columns at any width). ``frame`` in ``compile`` mode always
            attends over the whole capacity.
        kernel: the launch of the ``triton`` attention's kernel
            (``decode_attention.KernelConfig``; None: its ``DEFAULT_CONFIG``).
    """

    def __init__(self, gpt: GPT, cache: RowKVCache, mode: str = "auto",
                 autocast: contextlib.AbstractContextManager | None = None,
                 compile_after: int = 4096, attention: str | None = None,
                 widths: int | None = None, kernel: KernelConfig | None = None):
        self.gpt, self.cache = gpt, cache
        self.device = cache.tokens.device
        self.mode = resolve_decode_mode(mode, self.device)
        self.compile_after = compile_after if mode == "auto" and self.mode == "compile" else 0
        self.tokens_decoded = 0
        """tokens fed so far (per row)"""
        self.weights = decode_weights(gpt)
        self.autocast = autocast or contextlib.nullcontext()
        self.col = torch.zeros(1, dtype=torch.long, device=self.device)
        self._ids = torch.zeros(cache.batch_size, dtype=torch.long, device=self.device)
        self.attention = attention or ("sdpa" if self.mode == "eager" else "reductions")
        check_attention(self.attention, self.device)
        if kernel is not None and self.attention != "triton":
            raise ValueError(f"a kernel launch applies to the 'triton' attention only, not "
                             f"{self.attention!r}: pass attention='triton' or no kernel")
        self.kernel = check_config(kernel or DEFAULT_CONFIG)
        """the launch of the ``triton`` attention's kernel"""
        if self.attention == "triton":
            load_decode_attention()  # registered before any compilation traces a call to it
        n = widths if widths is not None else (
            4 if self.mode == "cuda-graph" and self.attention == "reductions" else 1)
        if n < 1:
            raise ValueError(f"widths must be >= 1 (or None), got {widths}")
        self.widths = sorted({-(-cache.capacity * j // n) for j in range(1, n + 1)})
        """the attended widths, in columns, ascending; the last is the cache's capacity"""
        # Uncompiled steps (eager mode, the eager start of 'auto', a failed compilation) attend
        # with SDPA where the compiled step would use reductions, which only a compiler fuses.
        self.eager_attention = ("sdpa" if self.mode != "eager" and self.attention == "reductions"
                                else self.attention)
        self._eager = functools.partial(decode_one, attention=self.eager_attention,
                                        kernel=self.kernel)
        self._fn = self._compiled = self._eager
        if self.mode in ("compile", "cuda-graph"):
            fused = functools.partial(decode_one, attention=self.attention, kernel=self.kernel)
            # fullgraph: a graph break would bring back the per-op overhead this step removes.
            # A CUDA graph captures the compiled step: the compiler fuses each layer's attention
            # into one pass over the cache, where eager kernels take several (and the fused SDPA
            # kernels refuse head sizes that are not multiples of 8, as s2M's 18).
            self._compiled = torch.compile(fused, fullgraph=True, dynamic=len(self.widths) > 1)
            if not self.compile_after:
                self._fn = self._compiled
        self._frames: dict[tuple, object] = {}  # compiled decode_frame per sampling setting
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}  # per width
        self.compile_seconds: float | None = None
        """wall time of the first compiled or captured call (compilation or capture included)"""

    def width(self, column: int) -> int:
        """The width a token written at ``column`` attends over (the smallest that holds it)."""
        return next(w for w in self.widths if w > column)

    def _run(self, token_ids: torch.Tensor, width: int | None = None) -> torch.Tensor:
        c = self.cache
        w = width or c.capacity
        keys = c.keys if w == c.capacity else [k[:, :, :w] for k in c.keys]
        values = c.values if w == c.capacity else [v[:, :, :w] for v in c.values]
        with self.autocast:
            return self._fn(self.weights, keys, values, c.tokens[:, :w], token_ids, c.first,
                            self.col)

    def _capture(self, width: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Record the step at ``width`` as a CUDA graph, after warm-up runs on a side stream.

        The warm-up compiles the step; if compilation fails, it warns and captures the eager step.
        """
        c = self.cache
        saved = ([k.clone() for k in c.keys], [v.clone() for v in c.values], c.tokens.clone())
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            try:
                self._run(self._ids, width)
            except Exception as e:  # a compiler failure: the cache is restored below
                if self._fn is self._eager:
                    raise
                self._compile_failed(e, stacklevel=5)
                self.mode = "cuda-graph"  # still captured, from the eager step
            self._run(self._ids, width)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._run(self._ids, width)
        for dst, src in zip(c.keys + c.values + [c.tokens], saved[0] + saved[1] + [saved[2]],
                            strict=True):
            dst.copy_(src)  # the warm-up and capture wrote the current column: undo it
        self._graphs[width] = graph, out
        return graph, out

    def _first_compiled_call(self, token_ids: torch.Tensor, width: int) -> torch.Tensor:
        """Run the first compiled call, or fall back to eager decoding if compilation fails.

        torch.compile needs a C++ compiler on CPU; without one the step warns and goes on eagerly,
        with the same outputs, only slower.
        """
        try:
            return self._run(token_ids, width)
        except Exception as e:  # any compiler failure: nothing has run yet
            self._compile_failed(e, stacklevel=4)
            return self._run(token_ids, width)

    def _compile_failed(self, error: Exception, stacklevel: int) -> None:
        """Warn (at the caller ``stacklevel`` frames up) and decode eagerly from now on."""
        warnings.warn(f"torch.compile of the decode step failed ({type(error).__name__}: "
                      f"{error}); decoding eagerly instead (SimulatorConfig.decode='eager' skips "
                      "the attempt)", stacklevel=stacklevel)
        self.mode, self._fn = "eager", self._eager

    @torch.no_grad()
    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Append ``token_ids`` int64 (B,) at the cache's shared column; hidden float (B, E)."""
        c = self.cache
        if token_ids.shape != (c.batch_size,):
            raise ValueError(f"decode step feeds one token per row: expected shape "
                             f"({c.batch_size},), got {tuple(token_ids.shape)}")
        if c.length >= c.capacity:
            raise ValueError(f"the cache is full ({c.capacity} columns); slide it first")
        self.col.fill_(c.length)
        if self.compile_after and self.tokens_decoded >= self.compile_after:
            self._fn = self._compiled
        first = (self.mode != "eager" and self.compile_seconds is None
                 and (self.mode == "cuda-graph" or self._fn is self._compiled))
        start = time.perf_counter()
        width = self.width(c.length)
        if self.mode == "cuda-graph":
            self._ids.copy_(token_ids)
            graph, out = self._graphs.get(width) or self._capture(width)
            graph.replay()
            out = out.clone()
        elif first:
            out = self._first_compiled_call(token_ids, width)
        else:
            out = self._run(token_ids, width)
        if first:
            self.compile_seconds = time.perf_counter() - start
            logger.info("decode step (%s) ready in %.1f s", self.mode, self.compile_seconds)
        c.length += 1
        self.tokens_decoded += 1
        return out

    @torch.no_grad()
    def frame(self, action_ids: torch.Tensor, uniforms: torch.Tensor | None, image_vocab: int,
              tokens_per_frame: int, temperature: float = 1.0, top_k: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """One imagined step of every row: :func:`decode_frame` from the cache's next column.

        In ``compile`` mode the whole step (d_a + tokens_per_frame tokens and their sampling) is
        one compiled call, compiled once per sampling setting: at batch 1 on a CPU the per-call
        overhead of decoding token by token cost more than the arithmetic. A CUDA graph replays
        the single-token step per token. Every mode gives the same ids for the same uniforms.

        Args:
            action_ids: int64 (B, d_a) global action ids.
            uniforms: float (B, tokens_per_frame, image_vocab) in [0, 1) (None when greedy).
            image_vocab: V_o, the number of image ids.
            tokens_per_frame: image tokens per frame.
            temperature: softmax temperature; 0 samples greedily.
            top_k: sample among the k most likely ids only (None: all).

        Returns:
            ``(frame_tokens, hidden)`` as :func:`decode_frame` returns them.
        """
        c, steps = self.cache, action_ids.shape[1] + tokens_per_frame
        if action_ids.shape[0] != c.batch_size:
            raise ValueError(f"decode frame feeds {c.batch_size} rows, got action ids of shape "
                             f"{tuple(action_ids.shape)}")
        if c.length + steps > c.capacity:
            raise ValueError(f"the cache has {c.capacity - c.length} free columns, a step needs "
                             f"{steps}; slide it first")
        setting = dict(image_vocab=image_vocab, tokens_per_frame=tokens_per_frame,
                       temperature=float(temperature), top_k=top_k)
        if self.mode == "cuda-graph":
            hidden = None
            for j in range(action_ids.shape[1]):
                hidden = self(action_ids[:, j])
            return sample_frame(hidden, lambda k, ids: self(ids), self.gpt.lm_head, uniforms,
                                **setting), hidden
        fn = functools.partial(decode_frame, attention=self.eager_attention, kernel=self.kernel,
                               **setting)
        wrapper: contextlib.AbstractContextManager = contextlib.nullcontext()
        first = False
        if self.mode == "compile" and self.tokens_decoded >= self.compile_after:
            key = tuple(setting.values())
            first = key not in self._frames
            if first:
                # fullgraph: a graph break would bring back the per-call overhead
                self._frames[key] = torch.compile(
                    functools.partial(decode_frame, attention=self.attention,
                                      kernel=self.kernel, **setting),
                    fullgraph=True, dynamic=False)
                # On a CPU the compiled step's wrapper (its buffer allocations and kernel calls)
                # is C++: in one pair of timings an s300k step at batch 1 (its linear layers then
                # written as reductions) took 3.15 ms with it and 3.48 ms without, for about
                # twice the compile time.
                if self.device.type == "cpu":
                    wrapper = _cpp_wrapper()
            else:
                # every call has the first call's shapes, dtypes and devices (the cache is never
                # reallocated): checking the guards on its ~60 tensors again cost about 0.2 ms
                # a call (profiled once)
                wrapper = torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
            fn = self._frames[key]
        self.col.fill_(c.length)
        start = time.perf_counter()
        args = (self.weights, c.keys, c.values, c.tokens, c.first, self.col, action_ids, uniforms)
        try:
            with self.autocast, wrapper:
                z, hidden = fn(*args)
        except Exception as e:  # a compiler failure on the first call: nothing has run yet
            if not first:
                raise
            self._compile_failed(e, stacklevel=3)
            with self.autocast:
                z, hidden = decode_frame(*args, attention=self.eager_attention,
                                         kernel=self.kernel, **setting)
        if first and self.mode == "compile":
            self.compile_seconds = time.perf_counter() - start
            logger.info("decode frame (compiled) ready in %.1f s", self.compile_seconds)
        c.length += steps
        self.tokens_decoded += steps
        return z, hidden
