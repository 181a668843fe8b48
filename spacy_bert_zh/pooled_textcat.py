"""A textcat head over the encoder's pooled first piece: the shape of HF's ``BertForSequenceClassification``.

``spacy_bert_zh.TextCatPooler.v1`` reads each doc's ``[CLS]`` vector from the shared transformer
(the mean over the doc's spans when a long text has several), passes it through a dense + tanh
layer that ``textcat_partial`` seeds, when it is initialised, from the encoder's own pretrained
pooler (``pooler.dense``), then dropout and a softmax. The pooler's weights are pretrained, so
``spacy_bert_zh.Adam.v1`` gives them the encoder's learning rate, not the heads'.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

from spacy.language import Language
from spacy.util import registry
from thinc.api import Dropout, Model, Softmax, chain, glorot_uniform_init
from thinc.types import Floats1d, Floats2d

ARCHITECTURE = "spacy_bert_zh.TextCatPooler.v1"
POOLER_LAYER = "encoder_pooler"
# parameter names of the pooler layer; the optimizer treats them as pretrained (see training.py)
POOLER_PARAMS = ("pooler_W", "pooler_b")


@registry.architectures(ARCHITECTURE)
def build_pooler_textcat(upstream: str = "transformer", dropout: float = 0.1,
                         grad_factor: float = 1.0, nO: Optional[int] = None) -> Model:
    """Exclusive classes from the ``[CLS]`` vector of ``upstream``'s encoder, through its pooler."""
    from spacy_transformers.layers import TransformerListener

    listener = TransformerListener(upstream_name=upstream)
    output_layer = Softmax(nO=nO)
    model = chain(listener, first_piece_vectors(grad_factor), encoder_pooler(upstream),
                  Dropout(dropout), output_layer)
    model.set_ref("tok2vec", listener)
    model.set_ref("output_layer", output_layer)
    model.attrs["multi_label"] = False
    if nO is not None:
        model.set_dim("nO", nO)
    return model


def first_piece_vectors(grad_factor: float) -> Model:
    """Each doc's first-piece (``[CLS]``) vector, averaged over its spans; zeros for an empty doc."""
    return Model("first_piece_vectors", _first_piece_forward, attrs={"grad_factor": grad_factor,
                                                                      "width": 0})


def _first_piece_forward(model: Model, trf_datas: list, is_train: bool) -> Tuple[Floats2d, Callable]:
    from transformers.file_utils import ModelOutput

    states = [state_of(trf_data) for trf_data in trf_datas]
    width = next((state.shape[-1] for state in states if state is not None), model.attrs["width"])
    model.attrs["width"] = width
    vectors = model.ops.alloc2f(len(trf_datas), width)
    for row, state in enumerate(states):
        if state is not None:
            vectors[row] = state[:, 0, :].mean(axis=0)

    def backprop(d_vectors: Floats2d) -> list:
        d_trf_datas = []
        for trf_data, state, d_vector in zip(trf_datas, states, d_vectors):
            if "last_hidden_state" not in trf_data.model_output:
                continue  # an empty doc: the transformer made nothing for it (as trfs2arrays)
            d_state = model.ops.alloc(trf_data.model_output.last_hidden_state.shape, dtype="f")
            if state is not None:
                d_state[:, 0, :] = d_vector * (model.attrs["grad_factor"] / state.shape[0])
            d_trf_datas.append(type(trf_data)(model_output=ModelOutput(last_hidden_state=d_state),
                                              wordpieces=trf_data.wordpieces, align=trf_data.align))
        return d_trf_datas

    return vectors, backprop


def state_of(trf_data):
    """A doc's last hidden state (spans x pieces x width), or None when it has none."""
    if "last_hidden_state" not in trf_data.model_output:
        return None
    state = trf_data.model_output.last_hidden_state
    return state if state.size else None


def encoder_pooler(upstream: str) -> Model[Floats2d, Floats2d]:
    """``tanh(X W^T + b)``, width in = width out; ``seed_pooler`` copies the encoder's pooler in."""
    return Model(POOLER_LAYER, _pooler_forward, init=_init_pooler, params={name: None for name in POOLER_PARAMS},
                 dims={"nI": None, "nO": None}, attrs={"upstream": upstream})


def _init_pooler(model: Model, X: Optional[Floats2d] = None, Y=None) -> None:
    if X is not None:
        model.set_dim("nI", X.shape[1])
        model.set_dim("nO", X.shape[1])
    width = model.get_dim("nI")
    model.set_param("pooler_W", glorot_uniform_init(model.ops, (width, width)))
    model.set_param("pooler_b", model.ops.alloc1f(width))


def _pooler_forward(model: Model, X: Floats2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    W, b = model.get_param("pooler_W"), model.get_param("pooler_b")
    Y = model.ops.xp.tanh(model.ops.gemm(X, W, trans2=True) + b)

    def backprop(dY: Floats2d) -> Floats2d:
        d_pre = dY * (1.0 - Y ** 2)
        model.inc_grad("pooler_W", model.ops.gemm(d_pre, X, trans1=True))
        model.inc_grad("pooler_b", d_pre.sum(axis=0))
        return model.ops.gemm(d_pre, W)

    return Y, backprop


def seed_pooler(model: Model, nlp: Optional[Language]) -> bool:
    """Copy the upstream encoder's pretrained ``pooler.dense`` into ``model``'s pooler layer.

    Returns whether a pooler was copied: False when ``model`` has no pooler layer, or the encoder
    has no pretrained pooler (its layer then keeps its random start).
    """
    layer = pooler_layer(model)
    if layer is None or nlp is None:
        return False
    dense = pretrained_pooler_dense(nlp.get_pipe(layer.attrs["upstream"]))
    if dense is None:
        return False
    weight = dense.weight.detach().float().cpu().numpy()
    layer.set_dim("nI", weight.shape[1], force=True)
    layer.set_dim("nO", weight.shape[0], force=True)
    layer.set_param("pooler_W", layer.ops.asarray2f(weight))
    bias: Floats1d = layer.ops.asarray1f(dense.bias.detach().float().cpu().numpy())
    layer.set_param("pooler_b", bias)
    return True


def pooler_layer(model: Model) -> Optional[Model]:
    """The ``encoder_pooler`` layer inside ``model``, or None."""
    return next((node for node in model.walk() if node.name == POOLER_LAYER), None)


def pretrained_pooler_dense(transformer_pipe):
    """The ``pooler.dense`` torch module of a transformer pipe's HF model, or None."""
    for node in transformer_pipe.model.walk():
        for shim in node.shims:
            pooler = getattr(getattr(shim, "_model", None), "pooler", None)
            if pooler is not None and hasattr(pooler, "dense"):
                return pooler.dense
    return None
