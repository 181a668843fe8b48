"""`prepare` on downloads built here in each source's own layout, then `convert prepared`."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_bert_zh.cli import app
from spacy_bert_zh.prepare import PrepareError, SplitOptions, convert_prepared, prepare_corpus

NER_SENTENCES = [("张三在北京工作", ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]),
                 ("李四去了上海", ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
                 ("今天天气很好", ["O"] * 6)]


def bio_file(sentences, separator="\t", newline="\n") -> str:
    return "".join("".join(f"{c}{separator}{t}{newline}" for c, t in zip(text, tags)) + newline
                   for text, tags in sentences)


def many_sentences(n: int):
    return [NER_SENTENCES[i % len(NER_SENTENCES)] for i in range(n)]


def write_zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text.encode("utf-8"))
    return path


def read_docs(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("zh").vocab))


def test_msra_carves_dev_from_train_with_a_seed_and_normalises(tmp_path):
    download = tmp_path / "msra"
    download.mkdir()
    # a BOM and CRLF line ends, as Windows tools write them
    (download / "msra_train_bio.txt").write_bytes(b"\xef\xbb\xbf" + bio_file(many_sentences(20), newline="\r\n").encode())
    (download / "msra_test_bio.txt").write_text(bio_file(NER_SENTENCES), encoding="utf-8")
    manifest = prepare_corpus("msra", download, tmp_path / "out", SplitOptions(seed=3, dev_fraction=0.2))
    assert {name: entry["count"] for name, entry in manifest["splits"].items()} == {"train": 16, "dev": 4, "test": 3}
    train = (tmp_path / "out" / "train.bio").read_bytes()
    assert b"\r" not in train and not train.startswith(b"\xef\xbb\xbf")
    assert manifest["sources"]["msra_train_bio.txt"]["sha256"]
    reports = convert_prepared(tmp_path / "out", tmp_path / "corpus", show_progress=False)
    assert [report.docs for report in reports] == [16, 4, 3]
    test_docs = read_docs(tmp_path / "corpus" / "test" / "ner.spacy")
    assert [doc.text for doc in test_docs] == [text for text, _ in NER_SENTENCES]
    assert [(e.text, e.label_) for e in test_docs[0].ents] == [("张三", "PER"), ("北京", "LOC")]


def test_a_seed_decides_the_split(tmp_path):
    download = tmp_path / "msra"
    download.mkdir()
    sentences = [(f"第{i}句", ["O"] * len(f"第{i}句")) for i in range(30)]
    (download / "msra_train_bio.txt").write_text(bio_file(sentences), encoding="utf-8")
    (download / "msra_test_bio.txt").write_text(bio_file(NER_SENTENCES), encoding="utf-8")

    def dev_for(seed, name):
        prepare_corpus("msra", download, tmp_path / name, SplitOptions(seed=seed))
        return (tmp_path / name / "dev.bio").read_text(encoding="utf-8")

    assert dev_for(0, "a") == dev_for(0, "b")
    assert dev_for(0, "a") != dev_for(1, "c")
    train_and_dev = (tmp_path / "a" / "train.bio").read_text(encoding="utf-8") + dev_for(0, "a")
    assert sorted(train_and_dev.strip().split("\n\n")) == sorted(bio_file(sentences).strip().split("\n\n"))


def test_resume_keeps_its_splits_found_in_a_nested_folder(tmp_path):
    nested = tmp_path / "resume" / "ResumeNER"
    nested.mkdir(parents=True)
    bmes = [("王五任经理", ["B-NAME", "E-NAME", "O", "B-TITLE", "E-TITLE"])]
    for split in ("train", "dev", "test"):
        (nested / f"{split}.char.bmes").write_text(bio_file(bmes * 2, separator=" "), encoding="utf-8")
    manifest = prepare_corpus("resume", tmp_path / "resume", tmp_path / "out")
    assert {name: entry["count"] for name, entry in manifest["splits"].items()} == {"train": 2, "dev": 2, "test": 2}
    convert_prepared(tmp_path / "out", tmp_path / "corpus", show_progress=False)
    doc = read_docs(tmp_path / "corpus" / "dev" / "ner.spacy")[0]
    assert doc.text == "王五任经理"
    assert [(e.text, e.label_) for e in doc.ents] == [("王五", "NAME"), ("经理", "TITLE")]


def cluener_line(text: str, label: dict) -> str:
    return json.dumps({"text": text, "label": label}, ensure_ascii=False)


def test_cluener_public_dev_becomes_test_and_dev_is_carved_from_train(tmp_path):
    train = [cluener_line(f"小明{i}号在杭州", {"name": {f"小明{i}号"[:2]: [[0, 1]]}, "address": {"杭州": [[len(f"小明{i}号在"), len(f"小明{i}号在") + 1]]}})
             for i in range(10)]
    dev = [cluener_line("腾讯发布新游戏", {"company": {"腾讯": [[0, 1]]}})]
    unlabelled_test = [json.dumps({"id": 0, "text": "没有标注的句子"}, ensure_ascii=False)]
    write_zip(tmp_path / "cluener_public.zip", {"train.json": "\n".join(train) + "\n", "dev.json": "\n".join(dev) + "\n",
                                                "test.json": "\n".join(unlabelled_test), "README.md": "readme"})
    manifest = prepare_corpus("cluener", tmp_path / "cluener_public.zip", tmp_path / "out")
    assert manifest["converter"] == "spans"
    assert (tmp_path / "out" / "test.jsonl").read_text(encoding="utf-8").split("\n")[:-1] == dev
    carved = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").split("\n")[:-1] + \
        (tmp_path / "out" / "dev.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    assert sorted(carved) == sorted(train)
    assert manifest["splits"]["dev"]["count"] == 1
    convert_prepared(tmp_path / "out", tmp_path / "corpus", show_progress=False)
    doc = read_docs(tmp_path / "corpus" / "test" / "ner.spacy")[0]
    assert doc.text == "腾讯发布新游戏" and [(e.text, e.label_) for e in doc.ents] == [("腾讯", "company")]


def test_cluener_line_that_is_not_json_is_named(tmp_path):
    write_zip(tmp_path / "cluener_public.zip", {"train.json": '{"text": "好"}\n{"text": \n', "dev.json": ""})
    with pytest.raises(PrepareError, match=r"cluener_public.zip!train.json:2: not JSON"):
        prepare_corpus("cluener", tmp_path / "cluener_public.zip", tmp_path / "out")


def chnsenticorp_zip(path: Path, empty_text_in_dev: bool = False) -> Path:
    train = "label\ttext_a\n" + "".join(f"{i % 2}\t第{i}条评论不错\n" for i in range(6))
    dev = "qid\tlabel\ttext_a\n0\t1\t房间很干净\n1\t0\t\n" if empty_text_in_dev else "qid\tlabel\ttext_a\n0\t1\t房间很干净\n"
    test = "qid\tlabel\ttext_a\n0\t0\t服务太差\n1\t1\t早餐丰富\n"
    return write_zip(path, {"chnsenticorp/train.tsv": train, "chnsenticorp/dev.tsv": dev,
                            "chnsenticorp/test.tsv": test})


def test_chnsenticorp_maps_labels_reads_both_headers_and_lists_what_it_left_out(tmp_path):
    chnsenticorp_zip(tmp_path / "chnsenticorp.zip", empty_text_in_dev=True)
    manifest = prepare_corpus("chnsenticorp", tmp_path, tmp_path / "out")
    assert manifest["labels"] == ["正面", "负面"]
    assert manifest["left_out_count"] == 1 and manifest["left_out"][0]["line"] == 3
    assert manifest["left_out"][0]["file"].endswith("chnsenticorp.zip!chnsenticorp/dev.tsv")
    test_rows = [json.loads(line) for line in (tmp_path / "out" / "test.jsonl").read_text(encoding="utf-8").split("\n")[:-1]]
    assert test_rows == [{"text": "服务太差", "label": "负面"}, {"text": "早餐丰富", "label": "正面"}]
    convert_prepared(tmp_path / "out", tmp_path / "corpus", show_progress=False)
    docs = read_docs(tmp_path / "corpus" / "test" / "cls.spacy")
    assert [(doc.text, doc.cats) for doc in docs] == [("服务太差", {"正面": 0.0, "负面": 1.0}),
                                                      ("早餐丰富", {"正面": 1.0, "负面": 0.0})]


def test_chnsenticorp_unknown_label_and_missing_column_name_file_and_line(tmp_path):
    write_zip(tmp_path / "a.zip", {"train.tsv": "label\ttext_a\n2\t好\n", "dev.tsv": "", "test.tsv": ""})
    with pytest.raises(PrepareError, match=r"a.zip!train.tsv:2: label '2'"):
        prepare_corpus("chnsenticorp", tmp_path / "a.zip", tmp_path / "out")
    write_zip(tmp_path / "b.zip", {"train.tsv": "label\tcontent\n1\t好\n", "dev.tsv": "", "test.tsv": ""})
    with pytest.raises(PrepareError, match=r"b.zip!train.tsv:1: no column text_a or text"):
        prepare_corpus("chnsenticorp", tmp_path / "b.zip", tmp_path / "out")


def shopping_csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["cat", "label", "review"])
    writer.writerows(rows)
    return buffer.getvalue()


def test_online_shopping_splits_a_sorted_file_with_a_seed_and_keeps_texts_exactly(tmp_path):
    tricky = '屏幕不错,就是"续航"差\n第二行'
    rows = [["书籍", "1", f"书{i}很好看"] for i in range(10)] + [["手机", "0", f"手机{i}发热"] for i in range(9)]
    rows += [["手机", "1", tricky], ["书籍", "0", ""]]
    write_zip(tmp_path / "online_shopping_10_cats.zip", {"online_shopping_10_cats.csv": shopping_csv(rows)})
    manifest = prepare_corpus("online-shopping", tmp_path / "online_shopping_10_cats.zip", tmp_path / "out")
    assert {name: entry["count"] for name, entry in manifest["splits"].items()} == {"train": 16, "dev": 2, "test": 2}
    assert manifest["left_out"] == [{"file": manifest["sources"]["online_shopping_10_cats.csv"]["path"],
                                     "line": 23, "reason": "empty review"}]  # the tricky review spans 21-22
    texts = [json.loads(line)["text"] for split in ("train", "dev", "test")
             for line in (tmp_path / "out" / f"{split}.jsonl").read_text(encoding="utf-8").split("\n")[:-1]]
    assert sorted(texts) == sorted(row[2] for row in rows if row[2])
    train_labels = [json.loads(line)["label"] for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").split("\n")[:-1]]
    assert train_labels != sorted(train_labels)  # shuffled: the head of train is not one class
    convert_prepared(tmp_path / "out", tmp_path / "corpus", show_progress=False)
    all_docs = [doc for split in ("train", "dev", "test") for doc in read_docs(tmp_path / "corpus" / split / "cls.spacy")]
    assert tricky in [doc.text for doc in all_docs]
    assert all(set(doc.cats) == {"书籍", "手机"} for doc in all_docs)


def test_errors_name_the_download(tmp_path):
    with pytest.raises(PrepareError, match="no such file or folder"):
        prepare_corpus("msra", tmp_path / "absent", tmp_path / "out")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "msra_test_bio.txt").write_text(bio_file(NER_SENTENCES), encoding="utf-8")
    with pytest.raises(PrepareError, match=r"no file called msra_train_bio.txt"):
        prepare_corpus("msra", tmp_path / "dl", tmp_path / "out")
    (tmp_path / "dl" / "msra_train_bio.txt").write_bytes("张\tO\n".encode("gbk"))
    with pytest.raises(PrepareError, match=r"msra_train_bio.txt: not UTF-8"):
        prepare_corpus("msra", tmp_path / "dl", tmp_path / "out")
    with pytest.raises(PrepareError, match="unknown corpus 'weibo'"):
        prepare_corpus("weibo", tmp_path / "dl", tmp_path / "out")
    with pytest.raises(PrepareError, match="missing; run `spacy-bert-zh prepare`"):
        convert_prepared(tmp_path / "dl", tmp_path / "corpus")
    assert not (tmp_path / "out").exists()


def test_cli_prepare_then_convert_prepared(tmp_path):
    chnsenticorp_zip(tmp_path / "chnsenticorp.zip")
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "chnsenticorp", str(tmp_path / "chnsenticorp.zip"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "train 6, dev 1, test 2" in result.output
    result = runner.invoke(app, ["convert", "prepared", str(tmp_path / "out"), str(tmp_path / "corpus"), "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "corpus").as_posix() for p in (tmp_path / "corpus").rglob("*.spacy")) == \
        ["dev/cls.spacy", "test/cls.spacy", "train/cls.spacy"]
    result = runner.invoke(app, ["prepare", "msra", str(tmp_path / "nothing"), str(tmp_path / "out2")])
    assert result.exit_code == 1 and "no such file or folder" in result.output


def test_real_workflow_from_downloads_to_test_scores(tmp_path, encoder_path):
    """`prepare-real`, `convert-real`, `train-real` (CPU config, 2 steps) and `evaluate-real` on
    downloads laid out as `spacy project assets` writes them."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(root / "project.yml", project)
    shutil.copytree(root / "configs", project / "configs")
    resume = project / "assets" / "resume"
    resume.mkdir(parents=True)
    bmes = [("王五任经理", ["B-NAME", "E-NAME", "O", "B-TITLE", "E-TITLE"]), ("他在上海", ["O", "O", "B-LOC", "E-LOC"])]
    for split in ("train", "dev", "test"):
        (resume / f"{split}.char.bmes").write_text(bio_file(bmes * 3, separator=" "), encoding="utf-8")
    (project / "assets" / "chnsenticorp").mkdir()
    chnsenticorp_zip(project / "assets" / "chnsenticorp" / "chnsenticorp.zip")
    variables = ["--vars.real_ner", "resume", "--vars.real_cls", "chnsenticorp", "--vars.real_config", "cpu",
                 "--vars.real_encoder", str(encoder_path), "--vars.real_gpu_id", "-1", "--vars.real_max_steps", "2"]
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"}
    for command in ("prepare-real", "convert-real", "train-real", "evaluate-real"):
        result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", command, str(project), *variables],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert json.loads((project / "corpus" / "real" / "resume" / "prepared.json").read_text())["corpus"] == "resume"
    scores = json.loads((project / "metrics" / "real_scores.json").read_text(encoding="utf-8"))
    assert scores["docs"] == 6 + 2  # the Resume test sentences and the ChnSentiCorp test reviews
    assert scores["ner"] is not None and scores["textcat"] is not None
    assert (project / "metrics" / "real_plots" / "textcat_confusion.png").stat().st_size > 1000
