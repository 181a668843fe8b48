"""spacy_bert_zh: Chinese BERT models in spaCy pipelines.

Corpus converters (``conversion``), the embedded encoder (``encoder``) and its domain-adaptive
MLM pretraining (``pretrain``, its streamed and masked data in ``mlm_data``), training helpers
registered in spaCy's registries (``training``), evaluation (``evaluation``, its PNG plots in
``plots``), batch annotation of Parquet files (``annotation``, with Ray Data in ``distributed``)
and a displaCy look at annotated rows (``show``).
"""
__version__ = "0.1.0"
