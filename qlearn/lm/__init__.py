"""A small character-level language model in numpy: corpus, transformer, trainer, perplexity.

The API other modules and chapters rely on (names may gain options, never lose them):

- :func:`load_model` ``() -> Transformer``: the committed, trained float32 model
  (d_model 128, 4 layers, 4 heads, context 128, vocabulary 96, 0.83 M parameters).
- :func:`load_corpus` ``() -> Corpus``: ``.train``, ``.valid``, ``.test`` (read-only int32 ids),
  ``.split(name)``, ``.tokenizer`` (:class:`CharTokenizer`: ``encode(str) -> ids``, ``decode(ids) -> str``).
- :class:`Transformer`: ``.config`` (:class:`LMConfig`), ``.params`` (dict name -> read-only float32 array),
  ``.linear_names()`` (every linear layer; ``name`` owns ``params[name + ".weight"]``, shape (out, in), and
  ``params[name + ".bias"]``), ``.with_params(dict) -> Transformer`` (new model, never mutates),
  ``.forward(tokens (B, T) int, *, linear=None, kv_hook=None) -> logits (B, T, V)``,
  ``.capture_inputs(tokens, names=None) -> {name: X (B*T, in)}``,
  ``.generate(prompt_ids, n, *, greedy=None, seed=None, temperature=1.0, linear=None, kv_hook=None,
  return_logits=False)`` with a KV cache.
  Hooks: ``linear(name, x, weight, bias) -> y`` replaces each linear's ``x @ weight.T + bias`` (``x`` is
  (B, T, in)); ``kv_hook(layer_index, k, v) -> (k, v)`` sees keys and values, each (B, n_heads, T, d_head),
  before attention (when generating: only the new positions, before they enter the cache).
- :func:`perplexity` ``(model, tokens="test", *, context=None, batch=32, max_tokens=16384, linear=None,
  kv_hook=None) -> float``: the one place perplexity is computed (first 16,384 targets of the split in
  non-overlapping windows of 128).
- :func:`unigram_perplexity` ``(tokens="test", *, train="train", ...) -> float``: the baseline, same targets.
- :func:`calibration_batches` ``(n_sequences=256, *, seed=0, context=128) -> (n, 128) int32``: windows of the
  training split, the one place calibration data comes from.

>>> import qlearn as ql
>>> tok = ql.lm.load_corpus().tokenizer
>>> tok.decode(tok.encode("def f(x):"))
'def f(x):'
"""

from qlearn.lm.corpus import CharTokenizer, Corpus, load_corpus
from qlearn.lm.eval import calibration_batches, perplexity, unigram_perplexity
from qlearn.lm.model import LMConfig, Transformer, loss_and_gradients
from qlearn.lm.weights import load_history, load_model

__all__ = [
    "CharTokenizer",
    "Corpus",
    "LMConfig",
    "Transformer",
    "calibration_batches",
    "load_corpus",
    "load_history",
    "load_model",
    "loss_and_gradients",
    "perplexity",
    "unigram_perplexity",
]
