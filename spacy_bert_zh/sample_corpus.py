"""Write the small embedded corpus: invented Chinese NER sentences and classified texts.

Everything here is generated from the word lists and templates below (no sentence comes from a
public corpus). The files use the raw formats of the real corpora, so they go through the same
converters: ``ner/{train,dev}.bio`` (a character, a TAB, its BIO tag; a blank line between
sentences) and ``cls/{train,dev}.tsv`` (``label<TAB>text``), laid out like the real corpora's
folders so that either can be named in ``project.yml``. ``texts.parquet`` holds unannotated
texts (``id``, ``text``) for trying out ``spacy-bert-zh annotate``. Dev files use names, places and organisations that never
occur in train, so a model must read the context rather than memorise the entities.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤")
GIVEN_CHARS = list("伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华建国文辉玉兰红梅志鹏晓东海燕雪飞宇浩然子涵欣怡思远佳琪俊峰嘉豪婷婷")
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "武汉", "成都", "重庆", "西安", "天津", "苏州",
          "长沙", "郑州", "青岛", "沈阳", "大连", "厦门", "昆明", "哈尔滨", "济南", "福州", "合肥", "南昌",
          "贵阳", "兰州", "太原", "石家庄", "拉萨", "海口", "三亚", "桂林", "洛阳", "开封", "宁波", "无锡",
          "广东省", "浙江省", "江苏省", "四川省", "湖南省", "云南省", "山东省", "河南省", "日本", "美国",
          "法国", "德国", "英国", "俄罗斯", "印度", "巴西", "埃及", "澳大利亚", "加拿大", "意大利", "西班牙"]
BRANDS = ["华信", "中科", "远航", "博雅", "天成", "新锐", "恒通", "金桥", "海创", "星辰", "东方", "长城",
          "明德", "启航", "鼎盛", "瑞丰", "云帆", "锦程", "光华", "百川", "清源", "凯达", "正泰", "宏图"]
ORG_SUFFIXES = ["科技有限公司", "银行", "大学", "人民医院", "研究所", "电视台", "日报社", "足球俱乐部",
                "中级人民法院", "集团", "出版社", "中学", "博物馆", "航空公司"]

NER_TEMPLATES = [
    "{PER}昨天在{LOC}会见了{ORG}的代表。",
    "{ORG}宣布将在{LOC}设立新的研发中心。",
    "据{ORG}消息，{PER}已于上周抵达{LOC}。",
    "{PER}是{ORG}的一名工程师，家住{LOC}。",
    "记者从{ORG}获悉，{LOC}今年的降雨量明显偏多。",
    "{PER}和{PER}一起从{LOC}出发前往{LOC}。",
    "今天上午，{LOC}举行了盛大的开幕式。",
    "{ORG}与{ORG}签署了战略合作协议。",
    "{PER}表示，{ORG}将继续加大在{LOC}的投资。",
    "这次会议由{ORG}主办，{PER}主持。",
    "我们明天去{LOC}看望{PER}老师。",
    "{LOC}的{ORG}近日发布了年度报告。",
    "在{LOC}工作多年的{PER}获得了{ORG}颁发的奖项。",
    "{PER}说，这是她第一次来{LOC}。",
    "来自{LOC}的{PER}加入了{ORG}。",
    "天气预报说明天有雨，请大家注意出行安全。",
    "他们对这次活动的安排非常满意。",
    "{ORG}的专家{PER}认为，{LOC}的经济还会继续增长。",
]

# Per class: subjects and events. The last three of each list occur only in dev texts, so dev
# accuracy measures whether the encoder carries the meaning over to words never seen in training.
CLS_VOCAB: Dict[str, Dict[str, List[str]]] = {
    "体育": {
        "subject": ["主队", "客队", "这名前锋", "国家队", "主教练", "守门员", "两支球队", "这位短跑名将",
                    "乒乓球女将", "篮球队中锋", "网球选手"],
        "event": ["在决赛中攻入两球", "以三比一赢得比赛", "拿下了联赛冠军", "打破了全国纪录",
                  "在加时赛中扳平比分", "赛季首次登场", "完成了帽子戏法", "获得世界杯参赛资格",
                  "夺得奥运会金牌", "在季后赛中连胜三场", "晋级男单四强"],
    },
    "财经": {
        "subject": ["央行", "上市公司", "券商", "这家基金", "投资者", "商业银行", "沪深两市", "外资机构",
                    "保险公司", "期货市场", "债券市场"],
        "event": ["下调了存款准备金率", "公布了季度财报", "净利润同比增长两成", "股价连续三日上涨",
                  "发行了新一期债券", "增持了蓝筹股", "成交额突破万亿元", "调整了贷款利率",
                  "营业收入大幅下滑", "市值蒸发了百亿元", "宣布派发现金红利"],
    },
    "科技": {
        "subject": ["研究团队", "这款手机", "芯片厂商", "人工智能公司", "工程师们", "新一代处理器", "开源社区",
                    "卫星", "机器人实验室", "软件开发者", "半导体企业"],
        "event": ["发布了新的操作系统", "推出了大语言模型", "实现了量子计算突破", "成功发射入轨",
                  "采用了五纳米工艺", "更新了软件算法", "提升了电池续航", "开放了应用接口",
                  "研制出新型传感器", "训练了图像识别网络", "申请了多项发明专利"],
    },
    "旅游": {
        "subject": ["游客们", "这家酒店", "景区", "旅行社", "自驾游爱好者", "古镇", "邮轮", "民宿老板",
                    "导游", "度假村", "背包客"],
        "event": ["推出了春节特价线路", "迎来了客流高峰", "开放了夜间游览", "提供免费接送机服务",
                  "延长了门票优惠期", "新增了登山步道", "举办了美食节", "接待了大批背包客",
                  "安排了海岛观光行程", "推荐了温泉住宿套餐", "组织了草原骑马体验"],
    },
}
DEV_ONLY = 3


def write_sample_corpus(out_dir: Path, n_ner_train: int = 400, n_ner_dev: int = 100,
                        n_cls_train: int = 400, n_cls_dev: int = 100, seed: int = 0) -> List[Path]:
    """Write ``ner/{train,dev}.bio``, ``cls/{train,dev}.tsv`` and ``texts.parquet`` into ``out_dir``."""
    rng = random.Random(seed)
    train_fillers, dev_fillers = split_fillers(rng)
    train_vocab, dev_vocab = split_cls_vocab()
    out_dir = Path(out_dir)
    ner_dev = make_ner_sentences(rng, n_ner_dev, dev_fillers)
    cls_dev = make_cls_texts(rng, n_cls_dev, dev_fillers, dev_vocab)
    files = {
        "ner/train.bio": bio_lines(make_ner_sentences(rng, n_ner_train, train_fillers)),
        "ner/dev.bio": bio_lines(ner_dev),
        "cls/train.tsv": tsv_lines(make_cls_texts(rng, n_cls_train, train_fillers, train_vocab)),
        "cls/dev.tsv": tsv_lines(cls_dev),
    }
    for name, lines in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text("".join(lines), encoding="utf-8")
    texts = [text for text, _ in ner_dev] + [text for _, text in cls_dev]
    write_texts_parquet(out_dir / "texts.parquet", texts)
    return [out_dir / name for name in (*files, "texts.parquet")]


def write_texts_parquet(path: Path, texts: Sequence[str]) -> None:
    """Write ``texts`` as a Parquet file with columns ``id`` (int64) and ``text`` (string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts, pa.string())})
    pq.write_table(table, path)


Fillers = Dict[str, List[str]]
Sentence = Tuple[str, List[Tuple[int, int, str]]]


def split_fillers(rng: random.Random) -> Tuple[Fillers, Fillers]:
    """Entity fillers for train and for dev, with no name, place or organisation in both."""
    people = sorted({rng.choice(SURNAMES) + "".join(rng.sample(GIVEN_CHARS, rng.choice((1, 2))))
                     for _ in range(400)})
    orgs = sorted({brand + suffix for brand in BRANDS for suffix in ORG_SUFFIXES})
    places = list(PLACES)
    for pool in (people, orgs, places):
        rng.shuffle(pool)
    train, dev = {}, {}
    for label, pool in (("PER", people), ("ORG", orgs), ("LOC", places)):
        cut = int(len(pool) * 0.75)
        train[label], dev[label] = pool[:cut], pool[cut:]
    return train, dev


def make_ner_sentences(rng: random.Random, n: int, fillers: Fillers) -> List[Sentence]:
    """``n`` sentences from the templates, with (start, end, label) character spans."""
    return [fill_template(rng.choice(NER_TEMPLATES), fillers, rng) for _ in range(n)]


def fill_template(template: str, fillers: Fillers, rng: random.Random) -> Sentence:
    """Replace each ``{LABEL}`` slot of ``template`` with a filler and record its span."""
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        label, _, rest = after.partition("}")
        text += before
        filler = rng.choice(fillers[label])
        spans.append((len(text), len(text) + len(filler), label))
        text += filler
    return text + rest, spans


def split_cls_vocab() -> Tuple[Dict, Dict]:
    """Class vocabularies for train and for dev: the last ``DEV_ONLY`` words of each list are dev's."""
    train = {label: {k: words[:-DEV_ONLY] for k, words in v.items()} for label, v in CLS_VOCAB.items()}
    dev = {label: {k: words[-DEV_ONLY:] for k, words in v.items()} for label, v in CLS_VOCAB.items()}
    return train, dev


CLS_TEMPLATES = ["{LOC}的{subject}{event}。", "据{PER}介绍，{subject}{event}，{subject}也{event}。",
                 "{subject}{event}，消息传到{LOC}后引起热议。", "{PER}说：“{subject}{event}了。”"]


def make_cls_texts(rng: random.Random, n: int, fillers: Fillers,
                   vocab: Dict[str, Dict[str, List[str]]]) -> List[Tuple[str, str]]:
    """``n`` (label, text) pairs, balanced over the classes, mentioning places and people."""
    labels = sorted(vocab)
    pairs = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = {**fillers, **vocab[label]}
        text, _ = fill_template(rng.choice(CLS_TEMPLATES), words, rng)
        pairs.append((label, text))
    rng.shuffle(pairs)
    return pairs


def bio_lines(sentences: Sequence[Sentence]) -> List[str]:
    """Character-per-line BIO lines, a blank line after each sentence."""
    lines = []
    for text, spans in sentences:
        tags = ["O"] * len(text)
        for start, end, label in spans:
            tags[start] = f"B-{label}"
            tags[start + 1:end] = [f"I-{label}"] * (end - start - 1)
        lines.extend(f"{char}\t{tag}\n" for char, tag in zip(text, tags))
        lines.append("\n")
    return lines


def tsv_lines(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """``label<TAB>text`` lines."""
    return [f"{label}\t{text}\n" for label, text in pairs]
