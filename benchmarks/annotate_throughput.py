"""Throughput of ``annotate`` against the encoder compute it cannot avoid, in characters/second.

On the same texts, the same pipeline and the same torch threads:
  (a) ``annotate_files``: Parquet in → pipeline → Parquet out (pipeline loaded beforehand);
  (b) the bare forward pass of the pipeline's own encoder (the HF module inside its transformer
      pipe, ``torch.inference_mode``) over exactly the token windows its span getter makes,
      sorted by length, in batches of ``--batch-size`` windows;
  (w) the same bare forward over *whole* texts (up to 512 wordpieces, no overlap), sorted by
      length: the least compute that gives every character its whole context;
  (c) the plain script a user would write: tokenizer + ``BertForTokenClassification`` over whole
      texts in input order, padded per batch, truncated at 512 tokens.
Each is timed ``--repeats`` times, interleaved, and the fastest kept (the machine may be shared).
The goal on CPU: a >= 0.85 x the faster of (b) and (w), on short texts (reviews) and on long
ones (news paragraphs of 300+ characters).

    .venv/bin/python benchmarks/annotate_throughput.py --model training/model-best --corpus news

Without ``--model`` an untrained pipeline of the configs/cpu.cfg shape is built (same compute as a
trained one). Texts (``--corpus``): ``reviews``, a seeded sample of online_shopping_10_cats test
reviews; ``news``, paragraphs of consecutive MSRA test sentences (300-600 characters, a seeded
sample). Both come from ../shared/data (found relative to the repository, see ``data.py``);
without it, generated Chinese text of similar lengths.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.data import SHARED_DATA, read_bio_sentences  # noqa: E402
from benchmarks.timing import interleaved_best  # noqa: E402

REVIEWS_TSV = SHARED_DATA / "online_shopping_10_cats" / "test.tsv"
NEWS_BIO = SHARED_DATA / "msra_ner" / "test.bio"
GOAL = 0.85


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    texts = corpus_texts(args.corpus, args.texts, args.seed)
    with tempfile.TemporaryDirectory(prefix="annotate-bench-") as tmp:
        model = args.model or str(build_untrained(Path(tmp) / "pipeline"))
        runs = {
            "a": prepare_annotate(model, texts, Path(tmp), args),
            "b": prepare_bare(model, pipeline_windows(model, texts), args.batch_size, "(b)"),
            "w": prepare_bare(model, [text for text in texts if text.strip()], args.batch_size, "(w)"),
            "c": prepare_plain_script(model, texts, args.batch_size),
        }
        _, seconds = interleaved_best(runs, args.repeats)
    report({name: total_chars(texts) / value for name, value in seconds.items()}, texts, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="pipeline folder or package (default: untrained, built here)")
    parser.add_argument("--corpus", choices=["reviews", "news"], default="reviews")
    parser.add_argument("--texts", type=int, default=600, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quantize", default=None, help="int8: (a) runs the quantized pipeline")
    parser.add_argument("--whole-text-windows", action="store_true",
                        help="(a) cuts texts with spacy_bert_zh.whole_text_spans.v1 (500/448), the "
                             "span getter of configs/*.cfg, whatever the pipeline was trained with")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for all")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measure (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def corpus_texts(corpus: str, count: int, seed: int) -> list[str]:
    """``count`` texts of the named corpus (see the module docstring)."""
    return news_paragraphs(count, seed) if corpus == "news" else sample_texts(count, seed)


def sample_texts(count: int, seed: int) -> list[str]:
    """A seeded random sample of real review texts (never the head: the file is sorted by class)."""
    if REVIEWS_TSV.is_file():
        lines = REVIEWS_TSV.read_text(encoding="utf-8").splitlines()
        texts = [line.split("\t", 1)[1] for line in lines if "\t" in line]
        return random.Random(seed).sample(texts, min(count, len(texts)))
    return generated_texts(count, seed)


def news_paragraphs(count: int, seed: int, low: int = 300, high: int = 600) -> list[str]:
    """Consecutive MSRA test sentences joined into paragraphs of ``low``-``high`` characters."""
    if not NEWS_BIO.is_file():
        return ["".join(generated_texts(12, seed + k)) [:high] for k in range(count)]
    paragraphs, current = [], ""
    for chars, _ in read_bio_sentences(NEWS_BIO):
        current += "".join(chars)
        if len(current) >= low:
            paragraphs.append(current[:high])
            current = ""
    return random.Random(seed).sample(paragraphs, min(count, len(paragraphs)))


def generated_texts(count: int, seed: int) -> list[str]:
    """Chinese-looking texts with review-like lengths (median ~35 characters, long tail)."""
    rng = random.Random(seed)
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
    punctuation = "，，，。！？"
    texts = []
    for _ in range(count):
        length = max(4, int(rng.lognormvariate(3.5, 0.8)))
        chars = [rng.choice(alphabet) if rng.random() > 0.08 else rng.choice(punctuation)
                 for _ in range(length)]
        texts.append("".join(chars))
    return texts


def build_untrained(dest: Path) -> Path:
    """The untrained test pipeline of tests/conftest.py (same architecture as configs/cpu.cfg)."""
    spec = importlib.util.spec_from_file_location("annotate_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    from spacy_bert_zh.encoder import DEFAULT_DEST, fetch_encoder

    return conftest.build_untrained_pipeline(fetch_encoder(REPO / DEFAULT_DEST).resolve(), dest)


def prepare_annotate(model: str, texts: list[str], tmp: Path, args) -> Callable[[], None]:
    """(a) ``annotate_files``, Parquet in and out, pipeline preloaded (and quantized if asked)."""
    from spacy_bert_zh.annotation import AnnotateOptions, annotate_files, annotate_table, load_pipeline
    from spacy_bert_zh.pipeline_runner import prepare_pipeline

    options = AnnotateOptions(batch_size=args.batch_size, quantize=args.quantize, progress=False,
                              overwrite=True)
    nlp = prepare_pipeline(load_pipeline(model), options)
    if args.whole_text_windows:
        from spacy_bert_zh.span_getters import configure_whole_text_spans

        nlp.get_pipe("transformer").model.attrs["get_spans"] = configure_whole_text_spans()
    annotate_table(nlp, pa.table({"text": texts[:8]}))  # warm-up
    source, dest = tmp / "input.parquet", tmp / "output.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), source)

    def run() -> None:
        summary = annotate_files(nlp, source, dest, options)
        assert summary.ok and summary.rows == len(texts) == pq.read_metadata(dest).num_rows

    return run


def pipeline_windows(model: str, texts: list[str]) -> list[str]:
    """The texts of the windows the pipeline's span getter cuts ``texts`` into."""
    import spacy

    nlp = spacy.load(model)
    get_spans = nlp.get_pipe("transformer").model.attrs["get_spans"]
    docs = [nlp.make_doc(text) for text in texts if text.strip()]
    return [span.text for doc_spans in get_spans(docs) for span in doc_spans]


def prepare_bare(model: str, inputs: list[str], batch_size: int, name: str) -> Callable[[], None]:
    """The pipeline's own encoder (weights and tokenizer) over ``inputs``, sorted by length."""
    import torch

    encoder, tokenizer = pipeline_encoder(model)
    ids = sorted(tokenizer(inputs, truncation=True, max_length=512)["input_ids"], key=len)
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    padded = [tokenizer.pad({"input_ids": batch}, return_tensors="pt") for batch in batches]
    print(f"{name} {len(inputs)} inputs, {sum(map(len, ids)):,} wordpieces", file=sys.stderr)

    @torch.inference_mode()
    def run() -> None:
        for batch in padded:
            encoder(**batch)

    return run


def pipeline_encoder(model: str):
    """(HF encoder module, HF tokenizer) inside a pipeline's transformer pipe, in eval mode."""
    import spacy

    transformer = spacy.load(model).get_pipe("transformer").model
    return transformer.transformer.eval(), transformer.tokenizer


def prepare_plain_script(model: str, texts: list[str], batch_size: int) -> Callable[[], None]:
    """(c) tokenizer + BertForTokenClassification over whole texts, input order, per-batch padding."""
    import torch
    from transformers import BertForTokenClassification

    encoder, tokenizer = pipeline_encoder(model)
    classifier = BertForTokenClassification(encoder.config).eval()
    classifier.bert.load_state_dict(encoder.state_dict(), strict=False)

    @torch.inference_mode()
    def run() -> None:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                              max_length=512, return_tensors="pt")
            classifier(**batch).logits.argmax(-1).tolist()

    return run


def total_chars(texts: list[str]) -> int:
    return sum(len(text) for text in texts)


def report(rates: dict[str, float], texts: list[str], args: argparse.Namespace) -> None:
    bare = max(rates["b"], rates["w"])
    print(f"{args.corpus}: {len(texts)} texts, {total_chars(texts):,} characters "
          f"(mean {total_chars(texts) / len(texts):.0f}), batch size {args.batch_size}, "
          f"torch threads {args.threads}, model {args.model or 'untrained'}"
          + (f", (a) quantized {args.quantize}" if args.quantize else "")
          + (", (a) whole-text windows" if args.whole_text_windows else ""))
    print(f"(a) annotate, Parquet in/out          {rates['a']:10,.0f} chars/s")
    print(f"(b) bare encoder, pipeline windows    {rates['b']:10,.0f} chars/s")
    print(f"(w) bare encoder, whole texts (512)   {rates['w']:10,.0f} chars/s")
    print(f"(c) plain token-classification        {rates['c']:10,.0f} chars/s")
    print(f"a/b = {rates['a'] / rates['b']:.2f}   a/w = {rates['a'] / rates['w']:.2f}   "
          f"a/max(b,w) = {rates['a'] / bare:.2f} (goal {GOAL})   a/c = {rates['a'] / rates['c']:.2f}")


if __name__ == "__main__":
    main()
