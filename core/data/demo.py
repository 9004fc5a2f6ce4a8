"""The studio's built-in demo datasets, written by code from templates (no outside source).

Small, regular English and Chinese facts (numbers, arithmetic, colours, animals, days, spelling) and tiny stories,
so a tiny model learns visible structure within a minute of CPU training; plus tool use in the minimind-3 form
(core/data/demo_tools.py): `sft_tools.jsonl` (calls to the calculator and the unit converter, with their results
and answers, some with reasoning) and `agent_rl.jsonl` (upstream's agent-RL prompts with ground truth `gt`).

agent_rl.jsonl's held-out split: every 5th line (1-based lines 5, 10, 15, …; `agent_rl_held_out(i)` for the
0-based index) is held out. Its tasks are drawn from the held-out fifth of all calls (`demo_tools.is_held_out`),
which never appears in sft_tools.jsonl or in the other agent_rl.jsonl lines.

The output depends only on `seed`: `resources/demo/` is `generate_demo_data(..., seed=0)` byte for byte (a test
keeps them equal).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from core.data.demo_tools import (HELD_OUT_SHARE, agent_prompt, system_message, tool_conversation, tool_task,
                                  tool_transcript, tools_for)

SIZES = {"pretrain": 3000, "sft": 1200, "dpo": 400, "rl": 400, "sft_tools": 760, "agent_rl": 300}
TOOLS_ASIDE = 0.1  # share of sft_tools conversations that declare tools but need none (a plain fact question)
# pretrain.jsonl: a share of question-and-answer texts and of short tool-use chat transcripts besides the
# statements. Both make the model copy from the question (the animal, the expression) and from the tool's result
# (the number): cheap to learn in 128-token windows, and what SFT needs before it adds the long tools block.
PRETRAIN_QA_SHARE = 0.15
PRETRAIN_TOOL_SHARE = 0.75
ZH_SHARE = 0.25  # share of Chinese records

ZH_NUM = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十三", "十四", "十五",
          "十六", "十七", "十八", "十九", "二十"]
EN_NUM = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
COLOURS = [  # thing, colour, thing (zh), colour (zh)
    ("the sky", "blue", "天空", "蓝色"), ("grass", "green", "草", "绿色"), ("snow", "white", "雪", "白色"),
    ("coal", "black", "煤", "黑色"), ("a banana", "yellow", "香蕉", "黄色"), ("a tomato", "red", "西红柿", "红色"),
    ("an orange", "orange", "橙子", "橙色"), ("milk", "white", "牛奶", "白色"), ("a lemon", "yellow", "柠檬", "黄色"),
    ("a leaf", "green", "树叶", "绿色"), ("a strawberry", "red", "草莓", "红色"), ("the sea", "blue", "大海", "蓝色")]
ANIMALS = [  # name, sound, legs, name (zh), sound (zh)
    ("cat", "meow", 4, "猫", "喵喵"), ("dog", "woof", 4, "狗", "汪汪"), ("cow", "moo", 4, "牛", "哞哞"),
    ("duck", "quack", 2, "鸭子", "嘎嘎"), ("sheep", "baa", 4, "羊", "咩咩"), ("pig", "oink", 4, "猪", "哼哼"),
    ("hen", "cluck", 2, "母鸡", "咯咯"), ("frog", "croak", 4, "青蛙", "呱呱"), ("bee", "buzz", 6, "蜜蜂", "嗡嗡"),
    ("owl", "hoot", 2, "猫头鹰", "咕咕")]
DAYS = [("Monday", "星期一"), ("Tuesday", "星期二"), ("Wednesday", "星期三"), ("Thursday", "星期四"),
        ("Friday", "星期五"), ("Saturday", "星期六"), ("Sunday", "星期日")]
WORDS = ["cat", "dog", "sun", "tree", "book", "apple", "house", "river", "green", "bread", "tiger", "water",
         "garden", "yellow", "window", "school", "friend", "summer", "pencil", "orange", "rabbit", "morning"]
NAMES = [("Tom", "小明"), ("Mia", "小红"), ("Sam", "小华"), ("Lily", "小丽"), ("Ben", "小刚"), ("Anna", "小芳")]
THINGS = [("ball", "球"), ("book", "书"), ("kite", "风筝"), ("cup", "杯子"), ("hat", "帽子"), ("box", "盒子")]
SYSTEMS = [("You are a helpful assistant. Answer briefly.", "你是一个乐于助人的助手，请简短回答。"),
           ("You are a patient teacher for young children.", "你是一位耐心的小学老师。")]


@dataclass
class Fact:
    statement: str  # a sentence for pretraining
    question: str
    answer: str  # the full correct reply
    short: str  # the checkable short answer (RL)
    wrong: str  # a plausible but wrong reply (DPO rejected)


def _arith(r: random.Random, zh: bool) -> Fact:
    a, b = r.randint(0, 10), r.randint(0, 10)
    op = r.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    c = a + b if op == "+" else a - b
    bad = c + r.choice([-2, -1, 1, 2, 3]) if c > 2 else c + r.randint(1, 3)
    if zh:
        word = "加" if op == "+" else "减"
        return Fact(f"{a} {word} {b} 等于 {c}。", f"{a} {word} {b} 等于几？", f"{a} {word} {b} 等于 {c}。", str(c),
                    f"{a} {word} {b} 等于 {bad}。")
    return Fact(f"{a} {op} {b} = {c}.", f"What is {a} {op} {b}?", f"{a} {op} {b} = {c}.", str(c),
                f"{a} {op} {b} = {bad}.")


def _number(r: random.Random, zh: bool) -> Fact:
    n = r.randint(1, 19)
    parity = ("偶数", "奇数") if zh else ("even", "odd")
    p, q = parity[n % 2], parity[1 - n % 2]
    if r.random() < 0.5:
        if zh:
            return Fact(f"{n} 是{p}。{n} 在 {n - 1} 和 {n + 1} 之间。", f"{n} 是奇数还是偶数？", f"{n} 是{p}。", p,
                        f"{n} 是{q}。")
        return Fact(f"{n} is an {p} number. {n} comes after {n - 1} and before {n + 1}.",
                    f"Is {n} odd or even?", f"{n} is {p}.", p, f"{n} is {q}.")
    if zh:
        return Fact(f"{ZH_NUM[n]}后面是{ZH_NUM[n + 1]}。", f"{n} 后面是几？", f"{n} 后面是 {n + 1}。", str(n + 1),
                    f"{n} 后面是 {n + 2}。")
    return Fact(f"After {n} comes {n + 1}.", f"What number comes after {n}?", f"{n + 1} comes after {n}.",
                str(n + 1), f"{n + 2} comes after {n}.")


def _colour(r: random.Random, zh: bool) -> Fact:
    thing, colour, thing_zh, colour_zh = r.choice(COLOURS)
    other = r.choice([c for c in COLOURS if c[1] != colour])
    if zh:
        return Fact(f"{thing_zh}是{colour_zh}的。", f"{thing_zh}是什么颜色的？", f"{thing_zh}是{colour_zh}的。",
                    colour_zh, f"{thing_zh}是{other[3]}的。")
    name = thing[0].upper() + thing[1:]
    return Fact(f"{name} is {colour}.", f"What colour is {thing}?", f"{name} is {colour}.", colour,
                f"{name} is {other[1]}.")


def _animal(r: random.Random, zh: bool) -> Fact:
    name, sound, legs, name_zh, sound_zh = r.choice(ANIMALS)
    other = r.choice([a for a in ANIMALS if a[1] != sound])
    if r.random() < 0.5:
        if zh:
            return Fact(f"{name_zh}{sound_zh}叫。", f"{name_zh}怎么叫？", f"{name_zh}{sound_zh}叫。", sound_zh,
                        f"{name_zh}{other[4]}叫。")
        return Fact(f"A {name} says {sound}.", f"What does a {name} say?", f"A {name} says {sound}.", sound,
                    f"A {name} says {other[1]}.")
    bad = legs + 2 if legs < 6 else 4
    if zh:
        return Fact(f"{name_zh}有{ZH_NUM[legs]}条腿。", f"{name_zh}有几条腿？", f"{name_zh}有{ZH_NUM[legs]}条腿。",
                    str(legs), f"{name_zh}有{ZH_NUM[bad]}条腿。")
    return Fact(f"A {name} has {EN_NUM[legs]} legs.", f"How many legs does a {name} have?",
                f"A {name} has {EN_NUM[legs]} legs.", str(legs), f"A {name} has {EN_NUM[bad]} legs.")


def _day(r: random.Random, zh: bool) -> Fact:
    i = r.randrange(7)
    day, nxt, bad = DAYS[i], DAYS[(i + 1) % 7], DAYS[(i + 3) % 7]
    if zh:
        return Fact(f"{day[1]}后面是{nxt[1]}。一个星期有七天。", f"{day[1]}后面是星期几？", f"{day[1]}后面是{nxt[1]}。",
                    nxt[1], f"{day[1]}后面是{bad[1]}。")
    return Fact(f"After {day[0]} comes {nxt[0]}. A week has seven days.", f"What day comes after {day[0]}?",
                f"{nxt[0]} comes after {day[0]}.", nxt[0], f"{bad[0]} comes after {day[0]}.")


def _spelling(r: random.Random, zh: bool) -> Fact:
    w = r.choice(WORDS)
    n, bad = len(w), len(w) + r.choice([-1, 1, 2])
    if zh:
        return Fact(f"单词“{w}”有 {n} 个字母。", f"单词“{w}”有几个字母？", f"单词“{w}”有 {n} 个字母。", str(n),
                    f"单词“{w}”有 {bad} 个字母。")
    spelled = ", ".join(w)
    return Fact(f"The word '{w}' has {n} letters: {spelled}.", f"How many letters are in the word '{w}'?",
                f"The word '{w}' has {n} letters.", str(n), f"The word '{w}' has {bad} letters.")


def _story(r: random.Random, zh: bool) -> Fact:
    (a, a_zh), (b, b_zh) = r.sample(NAMES, 2)
    thing, thing_zh = r.choice(THINGS)
    _, colour, _, colour_zh = r.choice(COLOURS)
    if zh:
        story = f"{a_zh}有一个{colour_zh}的{thing_zh}。{a_zh}把{thing_zh}送给了{b_zh}。现在{b_zh}有{colour_zh}的{thing_zh}。"
        return Fact(story, story.rsplit("。", 2)[0] + f"。现在谁有{thing_zh}？", f"现在{b_zh}有{thing_zh}。", b_zh,
                    f"现在{a_zh}有{thing_zh}。")
    story = f"{a} has a {colour} {thing}. {a} gives the {thing} to {b}. Now {b} has the {colour} {thing}."
    return Fact(story, f"{a} has a {colour} {thing}. {a} gives the {thing} to {b}. Who has the {thing} now?",
                f"{b} has the {thing} now.", b, f"{a} has the {thing} now.")


DOMAINS = [_arith, _number, _colour, _animal, _day, _spelling, _story]


def _fact(r: random.Random, zh: bool | None = None) -> tuple[Fact, bool]:
    zh = r.random() < ZH_SHARE if zh is None else zh
    return r.choice(DOMAINS)(r, zh), zh


def _pretrain(r: random.Random) -> dict:
    zh = r.random() < ZH_SHARE
    kind = r.random()
    if kind < PRETRAIN_TOOL_SHARE:
        return {"text": tool_transcript(r, tool_task(r, zh))}
    domain = r.choice(DOMAINS)
    if kind < PRETRAIN_TOOL_SHARE + PRETRAIN_QA_SHARE:
        facts = [domain(r, zh) for _ in range(r.randint(1, 3))]
        return {"text": "\n".join(f"{f.question}{'' if zh else ' '}{f.answer}" for f in facts)}
    sentences = [domain(r, zh).statement for _ in range(r.randint(1, 4))]
    return {"text": ("" if zh else " ").join(sentences)}


def _sft(r: random.Random) -> dict:
    first, zh = _fact(r)
    msgs = []
    if r.random() < 0.2:
        msgs.append({"role": "system", "content": r.choice(SYSTEMS)[1 if zh else 0]})
    facts = [first] + [_fact(r, zh)[0] for _ in range(r.choice([0, 0, 0, 1, 2]))]
    for f in facts:
        msgs += [{"role": "user", "content": f.question}, {"role": "assistant", "content": f.answer}]
    return {"conversations": msgs}


def _dpo(r: random.Random) -> dict:
    f, zh = _fact(r)
    style = r.random()
    if style < 0.6:
        bad = f.wrong
    elif style < 0.85:  # repetitive: the degenerate loop small models fall into
        bad = (f.short + " ") * r.randint(5, 9)
        bad = bad.strip()
    else:
        bad = "我不知道。" if zh else "I don't know."
    user = {"role": "user", "content": f.question}
    return {"chosen": [user, {"role": "assistant", "content": f.answer}],
            "rejected": [user, {"role": "assistant", "content": bad}]}


def _rl(r: random.Random) -> dict:
    f, zh = _fact(r)
    if zh:
        hint = "只写答案。"
    else:
        hint = " Answer with a number." if f.short.isdigit() else " Answer with one word."
    return {"conversations": [{"role": "user", "content": f.question + hint}], "answer": f.short}


def _sft_tools(r: random.Random, i: int) -> dict:
    zh = r.random() < ZH_SHARE
    if r.random() < TOOLS_ASIDE:
        f = r.choice(DOMAINS)(r, zh)
        return {"conversations": [system_message(r, tools_for(r, None)), {"role": "user", "content": f.question},
                                  {"role": "assistant", "content": f.answer}]}
    return {"conversations": tool_conversation(r, tool_task(r, zh))}


def agent_rl_held_out(index: int) -> bool:
    """Whether the agent_rl.jsonl record at 0-based `index` is in the held-out split (every 5th line)."""
    return index % HELD_OUT_SHARE == HELD_OUT_SHARE - 1


def _agent_rl(r: random.Random, i: int) -> dict:
    return agent_prompt(r, tool_task(r, r.random() < ZH_SHARE, held_out=agent_rl_held_out(i)))


MAKERS = {"pretrain": _pretrain, "sft": _sft, "dpo": _dpo, "rl": _rl}
TOOL_MAKERS = {"sft_tools": _sft_tools, "agent_rl": _agent_rl}  # files of kind sft and rl


def _write(path: Path, records) -> Path:
    lines = [json.dumps(rec, ensure_ascii=False) for rec in records]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


def generate_demo_data(out_dir, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """Write pretrain.jsonl, sft.jsonl, dpo.jsonl and rl.jsonl into out_dir, and the tool-use files
    sft_tools.jsonl and agent_rl.jsonl (`demo_tool_files`); returns {kind: path} of the first four."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {**SIZES, **(sizes or {})}
    paths = {}
    for i, (name, make) in enumerate({**MAKERS, **TOOL_MAKERS}.items()):
        r = random.Random(seed * 1000 + i)  # one stream per file: changing one file's size leaves the others alone
        records = (make(r) if name in MAKERS else make(r, j) for j in range(sizes[name]))
        paths[name] = _write(out_dir / f"{name}.jsonl", records)
    return {kind: paths[kind] for kind in MAKERS}


def demo_tool_files(out_dir) -> dict[str, Path]:
    """{"sft_tools": path, "agent_rl": path}: where `generate_demo_data(out_dir)` wrote the tool-use files."""
    return {name: Path(out_dir) / f"{name}.jsonl" for name in TOOL_MAKERS}
