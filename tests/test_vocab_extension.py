"""``spacy-bert-zh extend-vocab``: [UNK] characters take [unusedX] slots of m3e-small's vocabulary."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from spacy_bert_zh.cli import app

TEXTS = ["我爱𠀋字和😀表情", "🇨🇳国旗䶮龘", "ok😀 好", "普通的句子。", "又是𠀋字"]


def test_unknown_characters_take_unused_slots(encoder_path, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    source = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"body": TEXTS + [None]}), source)
    before = AutoTokenizer.from_pretrained(str(encoder_path))
    assert "[UNK]" in before.tokenize("".join(TEXTS))
    result = CliRunner().invoke(app, ["extend-vocab", str(encoder_path), str(source), str(tmp_path / "enc"),
                                      "--text-column", "body", "--report", str(tmp_path / "r.json"), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["unk_before"] > 0 and report["unk_after"] == 0
    added = {char: count for char, count, _ in report["added"]}
    assert added["𠀋"] == 2 and added["😀"] == 1 and added["##😀"] == 1 and added["##🇳"] == 1
    assert all(slot.startswith("[unused") for _, _, slot in report["added"])
    after = AutoTokenizer.from_pretrained(str(tmp_path / "enc"))
    assert len(after) == len(before)
    assert after.tokenize("又是𠀋字 ok😀 🇨🇳") == ["又", "是", "𠀋", "字", "ok", "##😀", "🇨", "##🇳"]
    slot = next(slot for char, _, slot in report["added"] if char == "𠀋")
    assert after.convert_tokens_to_ids("𠀋") == before.convert_tokens_to_ids(slot)
    assert after("普通的句子。")["input_ids"] == before("普通的句子。")["input_ids"]
    assert AutoModel.from_pretrained(str(tmp_path / "enc")).config.vocab_size == len(before)


def test_limits_and_errors(encoder_path, tmp_path):
    (tmp_path / "t.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    result = CliRunner().invoke(app, ["extend-vocab", str(encoder_path), str(tmp_path / "t.txt"),
                                      str(tmp_path / "enc"), "--min-count", "2", "-q"])
    assert result.exit_code == 0 and "1 characters took 1 of 99" in result.output, result.output
    again = CliRunner().invoke(app, ["extend-vocab", str(encoder_path), str(tmp_path / "t.txt"), str(tmp_path / "enc")])
    assert again.exit_code == 2 and "exists" in again.output
    missing = CliRunner().invoke(app, ["extend-vocab", str(tmp_path), str(tmp_path / "t.txt"), str(tmp_path / "x")])
    assert missing.exit_code == 2 and "not a Hugging Face model folder" in missing.output
