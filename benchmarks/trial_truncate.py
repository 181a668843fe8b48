"""Trial: benchmarks/convergence.py with ours reading only what the HF baseline reads.

The baseline truncates each text at 256 wordpieces, [CLS] and [SEP] included
(``hf_baseline.MAX_WORDPIECES``); ours reads it whole (windows of up to 500 positions). This cuts
every text of train, dev and test where the baseline's tokenizer cuts it, before ours trains on
them, so that on the same batches the two systems differ in their heads and optimisers, not in
the text they read. Prints how many texts of each split were cut. Classification tasks only.

    python benchmarks/trial_truncate.py --task chnsenticorp --system ours --max-steps 3600 \
        --eval-every 200 --patience 0 --seed 0 --results DIR
"""
import sys
from functools import lru_cache
from pathlib import Path

import spacy
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import convergence  # noqa: E402
from benchmarks.hf_baseline import MAX_WORDPIECES  # noqa: E402
from spacy_bert_zh.conversion import CLS_ATTRS  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402

original_convert_cls = convergence.convert_cls
original_split_texts = convergence.split_texts


@lru_cache(maxsize=1)
def baseline_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(fetch_encoder(ROOT / "encoders" / "m3e-small")))


@lru_cache(maxsize=None)  # the training texts are cut twice: in the DocBin and in the order check
def cut_where_baseline_does(text: str) -> str:
    """``text`` up to the end of the last wordpiece the baseline keeps (whole if it keeps all)."""
    tokenizer = baseline_tokenizer()
    if len(tokenizer(text)["input_ids"]) <= MAX_WORDPIECES:
        return text
    kept = tokenizer(text, truncation=True, max_length=MAX_WORDPIECES, return_offsets_mapping=True)
    return text[:max(end for _, end in kept["offset_mapping"])]


def convert_and_cut(source: Path, output: Path, **options) -> None:
    """convert_cls, then every doc's text cut as the baseline cuts it (its cats kept)."""
    original_convert_cls(source, output, **options)
    nlp = spacy.blank("zh")
    docs, cut = [], 0
    for doc in DocBin().from_disk(output).get_docs(nlp.vocab):
        text = cut_where_baseline_does(doc.text)
        cut += text != doc.text
        short = nlp.make_doc(text)
        short.cats = doc.cats
        docs.append(short)
    DocBin(attrs=list(CLS_ATTRS), docs=docs).to_disk(output)
    print(f"{source.name}: {cut} of {len(docs)} texts cut at {MAX_WORDPIECES} wordpieces", flush=True)


def split_texts_cut(task, split: str) -> list:
    return [cut_where_baseline_does(text) for text in original_split_texts(task, split)]


if __name__ == "__main__":
    convergence.convert_cls = convert_and_cut
    convergence.split_texts = split_texts_cut   # the check that the DocBin holds the baseline's texts
    convergence.main()
