"""The shared encoder steps on its own batch's gradient: ``[nlp.after_pipeline_creation]``.

spaCy 3.8's ``Language.update`` calls each component's ``finish_update`` right after that
component's ``update``. A transformer (or tok2vec) gets its gradient from the components that
listen to it, and they update after it: its ``finish_update`` comes before their gradient, so
every step of the encoder applies the previous batch's gradient, and the last batch's is never
applied (explosion/spaCy#12136, fixed on spaCy's v4 branch only). On ChnSentiCorp this left ours'
encoder one step behind a plain PyTorch fine-tune from the same start (benchmarks/trial_same_steps.py).

``spacy_bert_zh.step_after_listeners.v1`` makes each transformer and tok2vec of the pipeline hold
the step that ``finish_update`` asks for until its last listener has sent the gradient of the same
batch, then take it: the order of spaCy v4 and of ``spacy-transformers``' own ``update(sgd=...)``.
Calls that already come in that order are unchanged: ``update(sgd=optimizer)``, and
``nlp.update(sgd=False)`` followed by the caller's own ``finish_update``.
"""
from __future__ import annotations

from typing import Callable

from spacy.language import Language
from spacy.pipeline import Tok2Vec
from spacy.util import registry
from spacy_transformers import Transformer

CALLBACK = "spacy_bert_zh.step_after_listeners.v1"


@registry.callbacks(CALLBACK)
def make_step_after_listeners() -> Callable[[Language], Language]:
    """A callback that reorders the encoder's step in each of the pipeline's shared encoders."""

    def reorder(nlp: Language) -> Language:
        for _, pipe in nlp.pipeline:
            reordered = isinstance(getattr(pipe.update, "__self__", None), StepAfterListeners)
            if isinstance(pipe, (Transformer, Tok2Vec)) and not reordered:
                StepAfterListeners(pipe)
        return nlp

    return reorder


class StepAfterListeners:
    """One shared encoder's ``update`` and ``finish_update``, replaced on the pipe instance."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.update_first = pipe.update
        self.step_now = pipe.finish_update
        self.waiting = False  # the last listener has not sent this batch's gradient yet
        self.held = None      # the optimizer that finish_update passed meanwhile
        pipe.update = self.update
        pipe.finish_update = self.finish_update

    def update(self, examples, **kwargs):
        self.release()  # a step held for a batch that no listener backpropagated
        self.waiting = False
        losses = self.update_first(examples, **kwargs)
        listener = self.pipe.listeners[-1] if self.pipe.listeners else None
        if kwargs.get("sgd") is None and listener is not None and listener._backprop is not None:
            listener._backprop = self.stepping_after(listener._backprop)
            self.waiting = True
        return losses

    def stepping_after(self, backprop: Callable) -> Callable:
        """``backprop`` (the encoder's backward pass), then the step held for it."""

        def backprop_then_step(*args, **kwargs):
            result = backprop(*args, **kwargs)
            self.waiting = False
            self.release()
            return result

        return backprop_then_step

    def finish_update(self, sgd) -> None:
        if self.waiting:
            self.held = sgd
        else:
            self.step_now(sgd)

    def release(self) -> None:
        if self.held is not None:
            sgd, self.held = self.held, None
            self.step_now(sgd)
