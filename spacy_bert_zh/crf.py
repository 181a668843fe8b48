"""Linear-chain CRF over per-token tag scores: log partition, marginals, Viterbi, and the layer
that holds the learned transition scores of ``ner_tagger`` with ``crf = true``.

The score of a tag path ``y`` of a sequence of length n is

    start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and the CRF's probability of ``y`` is ``exp(score(y) - log_z)``. The functions take a padded batch
(``emissions`` of shape batch x positions x tags, ``lengths`` of each sequence, at least 1; what
lies past a sequence's length is ignored) and are vectorised over the batch and the tags: the only
Python loop is over positions. They take numpy or cupy arrays (``ner_tagger`` calls them with
float64 numpy arrays: the tag dimension is small).

Constraints (tags that may not follow each other, tokens that may only take some tags) are added
to the scores by the caller as ``FORBIDDEN`` (a large finite negative score, so that an
impossible gold path gives a large loss, never NaN).

No maintained CRF package fits thinc: pytorch-crf (the common one) has not changed since 2019 and
would need a PyTorchWrapper around a module that also owns the loss; these ~100 lines do, and
tests/test_crf.py checks them against enumeration of all tag paths.
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Tuple

from thinc.api import Model, get_array_module

# Added to the score of a forbidden transition or tag: exp(FORBIDDEN) is 0 in float32 and float64.
FORBIDDEN = -1e4
CRF_LAYER = "with_crf_transitions"
CRF_PARAMS = ("transitions", "start", "end")  # the names the optimizer scales (training.py)


class CRFMarginals(NamedTuple):
    """What ``crf_marginals`` returns, per sequence of the batch.

    ``log_z``: log partition function (batch). ``unary[b, t, k]``: probability that position t has
    tag k (0 past the sequence's length). ``pairwise[b, i, j]``: expected number of positions where
    tag j follows tag i.
    """

    log_z: object
    unary: object
    pairwise: object


def crf_marginals(emissions, lengths, transitions, start, end) -> CRFMarginals:
    """Forward-backward: log partition function and tag marginals of each sequence."""
    xp = get_array_module(emissions)
    n_batch, n_positions, _ = emissions.shape
    valid = _valid_positions(xp, lengths, n_positions)
    alpha = _forward(emissions, valid, transitions, start)
    log_z = logsumexp(alpha[:, -1] + end, axis=1)
    beta = xp.empty_like(alpha)
    beta[:, -1] = end
    for t in range(n_positions - 2, -1, -1):
        step = logsumexp(transitions[None] + (emissions[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        beta[:, t] = xp.where(valid[:, t + 1, None], step, end[None])
    unary = xp.exp(alpha + beta - log_z[:, None, None]) * valid[:, :, None]
    pairwise = xp.zeros((n_batch,) + transitions.shape, dtype=alpha.dtype)  # batch x tags x tags at a time
    for t in range(1, n_positions):
        pair_scores = (alpha[:, t - 1, :, None] + transitions[None]
                       + (emissions[:, t] + beta[:, t])[:, None, :] - log_z[:, None, None])
        pairwise += xp.exp(pair_scores) * valid[:, t, None, None]
    return CRFMarginals(log_z, unary, pairwise)


def crf_log_partition(emissions, lengths, transitions, start, end):
    """The forward algorithm alone: log of the summed exp(score) of all tag paths (batch)."""
    xp = get_array_module(emissions)
    alpha = _forward(emissions, _valid_positions(xp, lengths, emissions.shape[1]), transitions, start)
    return logsumexp(alpha[:, -1] + end, axis=1)


def crf_viterbi(emissions, lengths, transitions, start, end) -> Tuple[List, object]:
    """The best-scoring tag path of each sequence (a list of int arrays) and its score (batch)."""
    xp = get_array_module(emissions)
    n_batch, n_positions, n_tags = emissions.shape
    valid = _valid_positions(xp, lengths, n_positions)
    rows, identity = xp.arange(n_batch), xp.arange(n_tags)[None]
    score = start[None] + emissions[:, 0]
    backpointers = xp.zeros((n_batch, n_positions, n_tags), dtype="i")
    for t in range(1, n_positions):
        candidates = score[:, :, None] + transitions[None]
        keep = valid[:, t, None]
        backpointers[:, t] = xp.where(keep, candidates.argmax(axis=1), identity)  # padding: stay
        score = xp.where(keep, candidates.max(axis=1) + emissions[:, t], score)
    final = score + end[None]
    paths = xp.zeros((n_batch, n_positions), dtype="i")
    paths[:, -1] = final.argmax(axis=1)
    for t in range(n_positions - 1, 0, -1):
        paths[:, t - 1] = backpointers[rows, t, paths[:, t]]
    lengths = [int(n) for n in lengths]
    return [paths[b, :n] for b, n in enumerate(lengths)], final.max(axis=1)


def logsumexp(scores, axis: int):
    """log(sum(exp(scores))) along ``axis``, without overflow."""
    xp = get_array_module(scores)
    top = scores.max(axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)
    return (top + xp.log(xp.exp(scores - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def with_crf_transitions(emission_model: Model) -> Model:
    """``emission_model`` (docs -> tokens x tags scores) with CRF scores as parameters of its own:
    ``transitions`` (tags x tags, row: previous tag), ``start`` and ``end`` (tags), zero at first.

    The forward pass is the emission model's; the CRF scores get their gradient from the loss
    (``inc_grad``), and the optimizer updates them with the rest in ``finish_update``. They are
    saved with the model, so ``to_disk``/``from_disk`` and ``to_bytes``/``from_bytes`` keep them.
    The emission model's refs (``tok2vec``, ``softmax``, ...) are the wrapper's too.
    """
    refs = {name: emission_model.get_ref(name) for name in emission_model.ref_names}
    return Model(CRF_LAYER, _forward_emissions, init=_init_transitions, layers=[emission_model],
                 dims={"nO": None}, params=dict.fromkeys(CRF_PARAMS), refs=refs)


def _forward_emissions(model: Model, docs, is_train: bool) -> Tuple[object, Callable]:
    return model.layers[0](docs, is_train)


def _init_transitions(model: Model, X=None, Y=None) -> Model:
    inner = model.layers[0]
    inner.initialize(X=X, Y=Y)
    n_tags = inner.get_dim("nO")
    model.set_dim("nO", n_tags)
    model.set_param("transitions", model.ops.alloc2f(n_tags, n_tags))
    model.set_param("start", model.ops.alloc1f(n_tags))
    model.set_param("end", model.ops.alloc1f(n_tags))
    return model


def _valid_positions(xp, lengths, n_positions: int):
    """``valid[b, t]``: position t lies within sequence b."""
    lengths = xp.asarray(lengths)
    if int(lengths.min()) < 1:
        raise ValueError("CRF sequences need at least one position")
    return xp.arange(n_positions)[None] < lengths[:, None]


def _forward(emissions, valid, transitions, start):
    """``alpha[b, t, k]``: log summed exp(score) of the paths up to t ending in tag k (carried
    unchanged past the sequence's length)."""
    xp = get_array_module(emissions)
    alpha = xp.empty_like(emissions)
    alpha[:, 0] = start[None] + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = logsumexp(alpha[:, t - 1, :, None] + transitions[None], axis=1) + emissions[:, t]
        alpha[:, t] = xp.where(valid[:, t, None], step, alpha[:, t - 1])
    return alpha
