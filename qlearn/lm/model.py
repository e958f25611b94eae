"""A decoder-only transformer in numpy: forward, backward and KV-cache generation.

Token and learned position embeddings; ``n_layers`` pre-LayerNorm blocks, each
``x += proj(attention(LN1(x)))`` then ``x += fc2(gelu(fc1(LN2(x))))``; a final LayerNorm and an
output head. Multi-head causal attention uses one fused ``qkv`` linear. Every weight matrix is stored
``(out, in)`` as in PyTorch, and each linear computes ``x @ W.T + b``.

Parameter names: ``tok_emb`` (V, d), ``pos_emb`` (context, d), ``blocks.{i}.ln1.weight|bias``,
``blocks.{i}.attn.qkv.weight`` (3d, d) ``|bias``, ``blocks.{i}.attn.proj.weight`` (d, d) ``|bias``,
``blocks.{i}.ln2.weight|bias``, ``blocks.{i}.mlp.fc1.weight`` (d_ff, d) ``|bias``,
``blocks.{i}.mlp.fc2.weight`` (d, d_ff) ``|bias``, ``ln_f.weight|bias``, ``head.weight`` (V, d) ``|bias``.
A *linear name* such as ``"blocks.0.attn.qkv"`` owns ``params[name + ".weight"]`` and ``params[name + ".bias"]``.

The float model knows nothing of quantization: two generic hooks let other modules change it.
``linear(name, x, weight, bias) -> y`` replaces every linear's ``x @ weight.T + bias`` (``x`` is
(..., in)); ``kv_hook(layer, k, v) -> (k, v)`` transforms the keys and values, each
(batch, n_heads, T, d_head), before attention uses them (and, when generating, before they enter the cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["LMConfig", "Transformer", "loss_and_gradients"]

Array = NDArray[np.floating[Any]]
LinearHook = Callable[[str, Array, Array, Array], Array]
KVHook = Callable[[int, Array, Array], tuple[Array, Array]]

_LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)


@dataclass(frozen=True)
class LMConfig:
    """Sizes of the transformer.

    Parameters
    ----------
    vocab_size : int
        Number of token ids.
    context : int
        Longest sequence (number of learned positions).
    d_model : int
        Width of the residual stream; a multiple of ``n_heads``.
    n_layers : int
        Number of blocks.
    n_heads : int
        Attention heads per block.
    d_ff : int
        Hidden width of the MLP.

    Raises
    ------
    ValueError
        If a size is not a positive integer or ``d_model % n_heads != 0``.

    Notes
    -----
    Parameter count: :math:`(V + C)d + L(12d^2 + 13d) + 2d + Vd + V` with ``d_ff = 4d``
    (per block :math:`4d^2 + 4d` in attention, :math:`8d^2 + 5d` in the MLP, :math:`4d` in two LayerNorms).

    Examples
    --------
    >>> LMConfig(vocab_size=96, context=16, d_model=8, n_layers=1, n_heads=2, d_ff=32).d_head
    4
    """

    vocab_size: int = 96
    context: int = 128
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model must be a multiple of n_heads; got d_model={self.d_model}, n_heads={self.n_heads}"
            )

    @property
    def d_head(self) -> int:
        """Width of one attention head, ``d_model // n_heads``."""
        return self.d_model // self.n_heads


def _shapes(cfg: LMConfig) -> dict[str, tuple[int, ...]]:
    d, f, v = cfg.d_model, cfg.d_ff, cfg.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"tok_emb": (v, d), "pos_emb": (cfg.context, d)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            shapes[b + ln + ".weight"] = (d,)
            shapes[b + ln + ".bias"] = (d,)
        for name, (o, n) in (("attn.qkv", (3 * d, d)), ("attn.proj", (d, d)), ("mlp.fc1", (f, d)), ("mlp.fc2", (d, f))):
            shapes[b + name + ".weight"] = (o, n)
            shapes[b + name + ".bias"] = (o,)
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,), "head.weight": (v, d), "head.bias": (v,)})
    return shapes


def _linear_names(cfg: LMConfig) -> list[str]:
    names = [f"blocks.{i}.{n}" for i in range(cfg.n_layers) for n in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    return [*names, "head"]


def init_params(cfg: LMConfig, seed: int) -> dict[str, NDArray[np.float32]]:
    """GPT-2 initialisation: weights N(0, 0.02²), residual projections scaled by 1/sqrt(2L), LN = (1, 0)."""
    rng = np.random.default_rng(seed)
    out: dict[str, NDArray[np.float32]] = {}
    for name, shape in _shapes(cfg).items():
        if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
            a = np.ones(shape)
        elif len(shape) == 1:
            a = np.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * cfg.n_layers) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
            a = rng.normal(0.0, std, size=shape)
        out[name] = a.astype(np.float32)
    return out


# ---------------------------------------------------------------- building blocks and their derivatives


def _layernorm(x: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
    # y = (x - mean) / sqrt(var + eps) * w + b over the last axis
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + _LN_EPS)
    xhat = xc * rstd
    return xhat * w + b, xhat, rstd


def _layernorm_backward(dy: Array, xhat: Array, rstd: Array, w: Array) -> tuple[Array, Array, Array]:
    # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w
    dxhat = dy * w
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    axes = tuple(range(dy.ndim - 1))
    return dx, (dy * xhat).sum(axes), dy.sum(axes)


def _gelu(x: Array) -> Array:
    # tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + np.tanh(x * (_GELU_C + _GELU_C * 0.044715 * (x * x))))


def _gelu_backward(dy: Array, x: Array) -> Array:
    # d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2), t = tanh(c (x + 0.044715 x^3))
    x2 = x * x
    t = np.tanh(x * (_GELU_C + _GELU_C * 0.044715 * x2))
    return dy * (0.5 * (1.0 + t) + (0.5 * x) * (1.0 - t * t) * (_GELU_C + 3 * _GELU_C * 0.044715 * x2))


def _default_linear(name: str, x: Array, weight: Array, bias: Array) -> Array:
    return x @ weight.T + bias


def _softmax(s: Array) -> Array:
    e = np.exp(s - s.max(-1, keepdims=True))
    out: Array = e / e.sum(-1, keepdims=True)
    return out


def _forward(
    p: Mapping[str, Array],
    cfg: LMConfig,
    tokens: NDArray[np.integer[Any]],
    *,
    linear: LinearHook | None = None,
    kv_hook: KVHook | None = None,
    past: list[tuple[Array, Array]] | None = None,
    cache: dict[Any, Any] | None = None,
) -> tuple[Array, list[tuple[Array, Array]]]:
    """Logits (B, T, V) and each layer's (k, v) including ``past``; fills ``cache`` for the backward pass."""
    lin = linear or _default_linear
    bsz, t = tokens.shape
    h_, dh = cfg.n_heads, cfg.d_head
    t0 = 0 if past is None else past[0][0].shape[2]
    x = p["tok_emb"][tokens] + p["pos_emb"][t0 : t0 + t]  # (B, T, d)
    # query at absolute position t0 + i sees keys 0 .. t0 + i
    allowed = np.arange(t0 + t)[None, :] <= (t0 + np.arange(t))[:, None]  # (T, t0 + T)
    kvs: list[tuple[Array, Array]] = []
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        h, xhat1, rstd1 = _layernorm(x, p[b + "ln1.weight"], p[b + "ln1.bias"])
        qkv = lin(b + "attn.qkv", h, p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"])  # (B, T, 3d)
        q, k, v = qkv.reshape(bsz, t, 3, h_, dh).transpose(2, 0, 3, 1, 4)  # each (B, H, T, dh)
        if kv_hook is not None:
            k, v = kv_hook(i, k, v)
        if past is not None:
            k = np.concatenate([past[i][0], k], axis=2)
            v = np.concatenate([past[i][1], v], axis=2)
        kvs.append((k, v))
        s = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(dh)  # (B, H, T, t0 + T)
        att = _softmax(np.where(allowed, s, -np.inf))
        o = (att @ v).transpose(0, 2, 1, 3).reshape(bsz, t, cfg.d_model)  # heads side by side
        x = x + lin(b + "attn.proj", o, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        h2, xhat2, rstd2 = _layernorm(x, p[b + "ln2.weight"], p[b + "ln2.bias"])
        a = lin(b + "mlp.fc1", h2, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])  # (B, T, d_ff)
        g = _gelu(a)
        x = x + lin(b + "mlp.fc2", g, p[b + "mlp.fc2.weight"], p[b + "mlp.fc2.bias"])
        if cache is not None:
            cache[i] = (h, xhat1, rstd1, q, k, v, att, o, h2, xhat2, rstd2, a, g)
    xf, xhatf, rstdf = _layernorm(x, p["ln_f.weight"], p["ln_f.bias"])
    logits = lin("head", xf, p["head.weight"], p["head.bias"])
    if cache is not None:
        cache["final"] = (xf, xhatf, rstdf)
    return logits, kvs


def loss_and_gradients(
    params: Mapping[str, Array], config: LMConfig, tokens: ArrayLike, targets: ArrayLike
) -> tuple[float, dict[str, Array]]:
    """Mean next-token cross-entropy of a batch and its gradient with respect to every parameter.

    Computes in the dtype of ``params`` (float64 params give a float64 gradient, as the gradient check
    in the tests uses).

    Parameters
    ----------
    params : mapping of str to ndarray
        All parameters (names as in the module docstring).
    config : LMConfig
        The sizes.
    tokens, targets : array_like of int, shape (batch, T)
        Inputs and the ids to predict at each position (usually ``tokens`` shifted by one).

    Returns
    -------
    loss : float
        :math:`-\\frac{1}{BT}\\sum \\log \\mathrm{softmax}(z)_{y}`, in nats.
    grads : dict of str to ndarray
        One gradient per parameter, same shapes.

    Raises
    ------
    ValueError
        If the shapes or ids are invalid.

    Notes
    -----
    Backward through softmax cross-entropy, :math:`\\partial L/\\partial z = (\\mathrm{softmax}(z) - e_y)/(BT)`;
    through attention :math:`P = \\mathrm{softmax}(S)`,
    :math:`\\partial S = P \\odot (\\partial P - \\mathrm{rowsum}(\\partial P \\odot P))`.

    Examples
    --------
    >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
    >>> m = Transformer.initialize(cfg, seed=0)
    >>> loss, g = loss_and_gradients(m.params, cfg, [[0, 1, 2]], [[1, 2, 3]])
    >>> bool(abs(loss - np.log(5)) < 0.05), g["head.weight"].shape
    (True, (5, 4))
    """
    tok = _check_tokens(tokens, config)
    tgt = _check_tokens(targets, config, name="targets")
    if tgt.shape != tok.shape:
        raise ValueError(f"targets must have the shape of tokens {tok.shape}; got {tgt.shape}")
    p = params
    cache: dict[Any, Any] = {}
    logits, _ = _forward(p, config, tok, cache=cache)
    bsz, t = tok.shape
    n = bsz * t
    z = logits.reshape(n, -1)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    flat_t = tgt.reshape(-1)
    loss = float(-logp[np.arange(n), flat_t].mean())
    dz = np.exp(logp)
    dz[np.arange(n), flat_t] -= 1.0
    dz = (dz / n).reshape(logits.shape)

    g: dict[str, Array] = {}

    def lin_back(name: str, x: Array, dy: Array) -> Array:
        g[name + ".weight"] = dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        g[name + ".bias"] = dy.reshape(-1, dy.shape[-1]).sum(0)
        out: Array = dy @ p[name + ".weight"]
        return out

    xf, xhatf, rstdf = cache["final"]
    dxf = lin_back("head", xf, dz)
    dx, g["ln_f.weight"], g["ln_f.bias"] = _layernorm_backward(dxf, xhatf, rstdf, p["ln_f.weight"])
    h_, dh = config.n_heads, config.d_head
    for i in reversed(range(config.n_layers)):
        b = f"blocks.{i}."
        h, xhat1, rstd1, q, k, v, att, o, h2, xhat2, rstd2, a, gl = cache[i]
        # MLP branch: x += fc2(gelu(fc1(LN2(x))))
        dg = lin_back(b + "mlp.fc2", gl, dx)
        dh2 = lin_back(b + "mlp.fc1", h2, _gelu_backward(dg, a))
        dx2, g[b + "ln2.weight"], g[b + "ln2.bias"] = _layernorm_backward(dh2, xhat2, rstd2, p[b + "ln2.weight"])
        dx = dx + dx2
        # attention branch: x += proj(attention(LN1(x)))
        do = lin_back(b + "attn.proj", o, dx).reshape(bsz, t, h_, dh).transpose(0, 2, 1, 3)  # (B, H, T, dh)
        datt = do @ v.transpose(0, 1, 3, 2)
        dv = att.transpose(0, 1, 3, 2) @ do
        ds = att * (datt - (datt * att).sum(-1, keepdims=True)) / math.sqrt(dh)
        dq = ds @ k
        dk = ds.transpose(0, 1, 3, 2) @ q
        dqkv = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(bsz, t, 3 * config.d_model)
        dh1 = lin_back(b + "attn.qkv", h, dqkv)
        dx1, g[b + "ln1.weight"], g[b + "ln1.bias"] = _layernorm_backward(dh1, xhat1, rstd1, p[b + "ln1.weight"])
        dx = dx + dx1
    dflat = dx.reshape(n, -1)
    onehot = np.zeros((n, config.vocab_size), dtype=dflat.dtype)
    onehot[np.arange(n), tok.reshape(-1)] = 1.0
    g["tok_emb"] = onehot.T @ dflat
    dpos = np.zeros_like(p["pos_emb"])
    dpos[:t] = dx.sum(0)
    g["pos_emb"] = dpos
    return loss, g


def _check_tokens(tokens: ArrayLike, cfg: LMConfig, name: str = "tokens", ndim: int = 2) -> NDArray[np.intp]:
    arr = np.asarray(tokens)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids; got dtype {arr.dtype}")
    if arr.ndim != ndim or arr.size == 0:
        want = "(batch, T)" if ndim == 2 else "(T,)"
        raise ValueError(f"{name} must be a non-empty array of shape {want}; got shape {arr.shape}")
    if arr.shape[-1] > cfg.context:
        raise ValueError(f"{name} may hold at most context={cfg.context} positions; got {arr.shape[-1]}")
    if arr.min() < 0 or arr.max() >= cfg.vocab_size:
        raise ValueError(f"{name} must lie in [0, {cfg.vocab_size - 1}]; got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.intp)


class Transformer:
    """The decoder-only transformer: immutable parameters, a forward pass with hooks, and generation.

    Parameters
    ----------
    config : LMConfig
        The sizes.
    params : mapping of str to array_like
        Every parameter of ``config`` (see the module docstring for names and shapes); stored as
        read-only float32 copies.

    Raises
    ------
    ValueError
        If a parameter is missing, unexpected, of the wrong shape or not finite.

    Notes
    -----
    Block :math:`i`: :math:`x \\leftarrow x + W_o\\,\\mathrm{attn}(\\mathrm{LN}_1(x))`, then
    :math:`x \\leftarrow x + W_2\\,\\mathrm{gelu}(W_1\\,\\mathrm{LN}_2(x))`;
    :math:`\\mathrm{attn} = \\mathrm{softmax}(QK^\\top/\\sqrt{d_h} + M)V` with the causal mask :math:`M`.

    Examples
    --------
    >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
    >>> m = Transformer.initialize(cfg, seed=0)
    >>> m.forward([[0, 1, 2]]).shape
    (1, 3, 5)
    >>> m.linear_names()
    ['blocks.0.attn.qkv', 'blocks.0.attn.proj', 'blocks.0.mlp.fc1', 'blocks.0.mlp.fc2', 'head']
    """

    def __init__(self, config: LMConfig, params: Mapping[str, ArrayLike]) -> None:
        if not isinstance(config, LMConfig):
            raise TypeError(f"config must be an LMConfig; got {type(config).__name__}")
        shapes = _shapes(config)
        missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
        if missing or extra:
            raise ValueError(f"params must hold exactly the model's parameters; missing {missing}, unexpected {extra}")
        stored: dict[str, NDArray[np.float32]] = {}
        for name, shape in shapes.items():
            a = np.array(params[name], dtype=np.float32)
            if a.shape != shape:
                raise ValueError(f"params[{name!r}] must have shape {shape}; got {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"params[{name!r}] must be finite; it holds NaN or inf")
            a.flags.writeable = False
            stored[name] = a
        self._config = config
        self._params = stored

    @classmethod
    def initialize(cls, config: LMConfig, seed: int = 0) -> Transformer:
        """Return an untrained model with GPT-2 initialisation from ``seed``.

        Parameters
        ----------
        config : LMConfig
            The sizes.
        seed : int
            Seed of the generator.

        Returns
        -------
        Transformer
            Weights :math:`\\mathcal N(0, 0.02^2)` (residual projections divided by :math:`\\sqrt{2L}`),
            biases 0, LayerNorm gains 1.

        Examples
        --------
        >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
        >>> Transformer.initialize(cfg).n_params
        241
        """
        return cls(config, init_params(config, seed))

    def __repr__(self) -> str:
        c = self._config
        return (
            f"Transformer(d_model={c.d_model}, n_layers={c.n_layers}, n_heads={c.n_heads}, "
            f"context={c.context}, vocab_size={c.vocab_size}, n_params={self.n_params})"
        )

    @property
    def config(self) -> LMConfig:
        """The sizes (an immutable :class:`LMConfig`)."""
        return self._config

    @property
    def params(self) -> dict[str, NDArray[np.float32]]:
        """A new dict of the (read-only, float32) parameter arrays."""
        return dict(self._params)

    @property
    def n_params(self) -> int:
        """Total number of parameters."""
        return sum(a.size for a in self._params.values())

    def linear_names(self) -> list[str]:
        """Names of every linear layer, in the order the forward pass uses them.

        Returns
        -------
        list of str
            ``name`` owns ``params[name + ".weight"]`` (out, in) and ``params[name + ".bias"]`` (out,).

        Examples
        --------
        >>> Transformer.initialize(LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1,
        ...                                 n_heads=2, d_ff=8)).linear_names()[-1]
        'head'
        """
        return _linear_names(self._config)

    def with_params(self, params: Mapping[str, ArrayLike]) -> Transformer:
        """Return a new model with some parameters replaced; this one is unchanged.

        Parameters
        ----------
        params : mapping of str to array_like
            Replacements, each with the shape of the parameter it replaces.

        Returns
        -------
        Transformer
            A model with the same config.

        Raises
        ------
        ValueError
            If a name is unknown or a shape differs.

        Examples
        --------
        >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
        >>> m = Transformer.initialize(cfg)
        >>> float(m.with_params({"head.bias": [1, 2, 3, 4, 5]}).params["head.bias"][4])
        5.0
        """
        unknown = sorted(set(params) - set(self._params))
        if unknown:
            raise ValueError(f"params holds names the model does not have: {unknown}")
        return Transformer(self._config, {**self._params, **params})

    def forward(
        self, tokens: ArrayLike, *, linear: LinearHook | None = None, kv_hook: KVHook | None = None
    ) -> NDArray[np.float32]:
        """Return the next-token logits at every position.

        Parameters
        ----------
        tokens : array_like of int, shape (batch, T)
            Token ids, ``T <= context``.
        linear : callable, optional
            ``linear(name, x, weight, bias) -> y`` replaces every linear's ``x @ weight.T + bias``;
            ``x`` is (batch, T, in), ``weight`` (out, in).
        kv_hook : callable, optional
            ``kv_hook(layer, k, v) -> (k, v)``, each (batch, n_heads, T, d_head), applied before attention.

        Returns
        -------
        numpy.ndarray
            Logits, shape (batch, T, vocab_size).

        Raises
        ------
        ValueError
            If ``tokens`` has the wrong shape, is longer than the context or holds unknown ids.

        Examples
        --------
        >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
        >>> m = Transformer.initialize(cfg)
        >>> seen = []
        >>> def lin(name, x, w, b):
        ...     seen.append(name)
        ...     return x @ w.T + b
        >>> bool(np.allclose(m.forward([[1, 2]], linear=lin), m.forward([[1, 2]]))), len(seen)
        (True, 5)
        """
        tok = _check_tokens(tokens, self._config)
        logits, _ = _forward(self._params, self._config, tok, linear=linear, kv_hook=kv_hook)
        return logits.astype(np.float32, copy=False)

    def capture_inputs(self, tokens: ArrayLike, names: list[str] | None = None) -> dict[str, NDArray[np.float32]]:
        """Return the input that each linear layer sees on ``tokens`` (for calibration).

        Parameters
        ----------
        tokens : array_like of int, shape (batch, T)
            Token ids.
        names : list of str, optional
            Linear names to record (default: all of :meth:`linear_names`).

        Returns
        -------
        dict of str to numpy.ndarray
            ``name -> X`` of shape (batch * T, in), rows in (batch, position) order.

        Raises
        ------
        ValueError
            If a name is not a linear of the model, or ``tokens`` is invalid.

        Examples
        --------
        >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
        >>> x = Transformer.initialize(cfg).capture_inputs([[1, 2, 3]], ["blocks.0.mlp.fc2"])
        >>> x["blocks.0.mlp.fc2"].shape
        (3, 8)
        """
        wanted = self.linear_names() if names is None else list(names)
        unknown = sorted(set(wanted) - set(self.linear_names()))
        if unknown:
            raise ValueError(f"names must be linear names of the model {self.linear_names()}; got unknown {unknown}")
        out: dict[str, NDArray[np.float32]] = {}

        def record(name: str, x: Array, w: Array, b: Array) -> Array:
            if name in wanted:
                out[name] = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
            return x @ w.T + b

        self.forward(tokens, linear=record)
        return out

    def generate(
        self,
        prompt_ids: ArrayLike,
        n: int,
        *,
        greedy: bool | None = None,
        seed: int | None = None,
        temperature: float = 1.0,
        linear: LinearHook | None = None,
        kv_hook: KVHook | None = None,
        return_logits: bool = False,
    ) -> Any:
        """Continue a prompt by ``n`` tokens, greedily or by seeded sampling, with a KV cache.

        Parameters
        ----------
        prompt_ids : array_like of int, shape (T,)
            The prompt (at least one id); only its last ``context`` ids are read.
        n : int
            Number of tokens to generate (positive).
        greedy : bool, optional
            Pick the most likely token. Default: greedy unless ``seed`` is given.
        seed : int, optional
            Seed of the sampler; sampling draws from ``softmax(logits / temperature)``.
        temperature : float
            Positive; only used when sampling.
        linear, kv_hook : callable, optional
            As in :meth:`forward`. When generating, ``kv_hook`` sees the keys and values of the new
            positions only (the whole prompt at first, then one token per step) before they enter the cache.
        return_logits : bool
            Also return the logits each token was chosen from.

        Returns
        -------
        ids : numpy.ndarray
            The ``n`` new ids (int32).
        logits : numpy.ndarray
            Shape (n, vocab_size); only if ``return_logits``.

        Raises
        ------
        ValueError
            If ``n`` or ``temperature`` is not positive, or ``greedy`` and ``seed`` contradict each other.

        Notes
        -----
        Each step feeds one token and appends its keys and values to the cache, so a step costs
        :math:`O(T)` instead of a full forward's :math:`O(T^2)`. When the cache holds ``context`` positions
        it is rebuilt from the last ``context // 2`` tokens (learned positions cannot slide).

        Examples
        --------
        >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
        >>> m = Transformer.initialize(cfg, seed=0)
        >>> m.generate([1, 2], 3).shape
        (3,)
        """
        cfg = self._config
        if np.ndim(prompt_ids) != 1:
            raise ValueError(f"prompt_ids must be a 1-d array of ids; got shape {np.shape(prompt_ids)}")
        prompt = _check_tokens(np.asarray(prompt_ids)[-cfg.context :], cfg, "prompt_ids", ndim=1)
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        if greedy is None:
            greedy = seed is None
        if greedy and seed is not None:
            raise ValueError("give either greedy=True or a seed for sampling, not both")
        if not greedy and seed is None:
            raise ValueError("sampling (greedy=False) needs a seed")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ValueError(f"temperature must be a positive number; got {temperature!r}")
        rng = np.random.default_rng(seed)
        ids = [int(i) for i in prompt[-cfg.context :]]

        def prefill(window: list[int]) -> tuple[Array, list[tuple[Array, Array]]]:
            lg, kv = _forward(self._params, cfg, np.array([window]), linear=linear, kv_hook=kv_hook)
            return lg[0, -1], kv

        last, kv = prefill(ids)
        out_ids, out_logits = [], []
        for step in range(n):
            if greedy:
                nxt = int(np.argmax(last))
            else:
                pr = _softmax(last.astype(np.float64) / temperature)
                nxt = int(rng.choice(cfg.vocab_size, p=pr))
            out_ids.append(nxt)
            out_logits.append(last)
            ids.append(nxt)
            if step == n - 1:
                break
            if kv[0][0].shape[2] >= cfg.context:
                last, kv = prefill(ids[-(cfg.context // 2) :])
            else:
                lg, kv = _forward(self._params, cfg, np.array([[nxt]]), linear=linear, kv_hook=kv_hook, past=kv)
                last = lg[0, -1]
        new = np.array(out_ids, dtype=np.int32)
        if return_logits:
            return new, np.stack(out_logits).astype(np.float32)
        return new
