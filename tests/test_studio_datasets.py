"""Datasets pane presenter: kind detection, paged preview of a big file, validation, stats, the pane itself."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")

from studio.panes.datasets.presenter import DatasetsPresenter  # noqa: E402


def _sft_line(i: int, pad: str) -> str:
    return json.dumps({"conversations": [{"role": "user", "content": f"question {i} {pad}"},
                                         {"role": "assistant", "content": f"answer {i}"}]}) + "\n"


@pytest.fixture(scope="module")
def big_sft(tmp_path_factory):
    """A ~50 MB SFT JSONL whose record i says "answer i" (so a page's content can be checked)."""
    path = tmp_path_factory.mktemp("big") / "big_sft.jsonl"
    pad = "x" * 400
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, 110_000, 10_000):
            f.write("".join(_sft_line(i, pad) for i in range(start, start + 10_000)))
    assert path.stat().st_size > 50e6
    return path


def test_kind_detection_of_each_format(qtbot, context, tmp_path):
    samples = {
        "p.jsonl": {"text": "hello"},
        "s.jsonl": {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        "d.jsonl": {"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "user", "content": "q"}]},
        "r.jsonl": {"conversations": [{"role": "user", "content": "q"}], "answer": "a"},
    }
    presenter = DatasetsPresenter(context)
    got = {}
    for name, rec in samples.items():
        (tmp_path / name).write_text(json.dumps(rec) + "\n")
        got[name] = presenter.detect_kind(tmp_path / name)
    (tmp_path / "t.txt").write_text("plain text\n")
    got["t.txt"] = presenter.detect_kind(tmp_path / "t.txt")
    assert got == {"p.jsonl": "pretrain", "s.jsonl": "sft", "d.jsonl": "dpo", "r.jsonl": "rl", "t.txt": "text"}


def test_add_folder_finds_data_files(qtbot, context, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "notes.bin").write_bytes(b"\0")
    presenter = DatasetsPresenter(context)
    assert [f.name for f in presenter.add_paths([tmp_path])] == ["x.jsonl"]


def test_big_file_page_one_before_index_then_later_page(qtbot, context, big_sft):
    presenter = DatasetsPresenter(context, page_size=20)
    first_pages = []
    presenter.pageReady.connect(lambda page, html: first_pages.append(
        (page, html, presenter.index.complete if presenter.index else None)))
    with qtbot.waitSignal(presenter.indexFinished, timeout=30_000) as finished, \
            qtbot.waitSignal(presenter.fileOpened, timeout=30_000):
        presenter.open(big_sft)
        # page 1 was rendered synchronously, from the top of the file, while the index was still empty
        assert first_pages and first_pages[0][0] == 0 and first_pages[0][2] is False
        assert "answer 0" in first_pages[0][1] and "answer 19" in first_pages[0][1]
        assert "answer 20" not in first_pages[0][1]
    assert presenter.kind == "sft"
    assert finished.args == [110_000]
    assert presenter.page_count == 5500
    with qtbot.waitSignal(presenter.pageReady, timeout=5_000) as shown:
        presenter.show_page(5123)
    page, html = shown.args
    assert page == 5123
    assert "answer 102460<" in html and "answer 102479<" in html and "answer 102480<" not in html
    assert "line 102461" in html  # 1-based file line numbers
    presenter.shutdown()


def test_page_requested_before_index_reaches_it_is_served_later(qtbot, context, big_sft):
    presenter = DatasetsPresenter(context, page_size=10)
    with qtbot.waitSignal(presenter.pageReady, timeout=30_000,
                          check_params_cb=lambda page, html: page == 10_999) as shown:
        presenter.open(big_sft)
        assert presenter.show_page(10_999) is False  # the index cannot be that far yet: pending
    assert "answer 109999<" in shown.args[1]
    presenter.shutdown()


def test_validation_lists_file_line_problems(qtbot, context, tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path.write_text("\n".join([good, "{not json", good,
                               json.dumps({"conversations": [{"role": "user", "content": "q"}]}),
                               json.dumps({"conversations": [{"role": "robot", "content": "q"}]})]) + "\n")
    presenter = DatasetsPresenter(context)
    presenter.open(path)
    with qtbot.waitSignal(presenter.validationFinished, timeout=10_000) as done:
        presenter.validate("sft")
    result = done.args[0]
    assert result["records"] == 2 and result["skipped"] == 3
    assert [e.split(": ")[0] for e in result["errors"]] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert f"{path}:5: conversations[0].role: unknown role 'robot'" in result["errors"][2]
    presenter.shutdown()


def test_stats_measure_token_lengths(qtbot, context, shared_data, tiny_tokenizer_dir, tiny_tokenizer, tmp_path):
    path = tmp_path / "pre.jsonl"
    lines = (shared_data / "pretrain.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    presenter = DatasetsPresenter(context)
    with qtbot.waitSignal(presenter.indexFinished, timeout=10_000):
        presenter.open(path)
    with qtbot.waitSignal(presenter.statsFinished, timeout=20_000) as done:
        presenter.compute_stats(tiny_tokenizer_dir, sample=100)
    stats = done.args[0]
    assert stats["lines"] == 300 and stats["sampled"] == 100
    texts = [json.loads(line)["text"] for line in lines]
    expected = {len(tiny_tokenizer.encode(t)) for t in texts}
    assert set(stats["lengths"].tolist()) <= expected
    assert 1.0 < stats["chars_per_token"] < 10.0
    presenter.shutdown()


def test_pane_shows_records_as_bubbles(qtbot, context, tmp_path):
    from studio.panes.datasets.view import DatasetsPane

    path = tmp_path / "s.jsonl"
    path.write_text(_sft_line(7, "hi"))
    pane = DatasetsPane(context)
    qtbot.addWidget(pane)
    with qtbot.waitSignal(pane.presenter.indexFinished, timeout=10_000), \
            qtbot.waitSignal(pane.presenter.fileOpened, timeout=10_000):
        pane.presenter.add_paths([path])
    assert "answer 7" in pane.preview.toPlainText()
    assert "sft" in pane.kind_label.text()


def test_train_tokenizer_saves_into_the_workspace(qtbot, context, tmp_path, shared_data):
    from core.tokenizer import MiniMindTokenizer

    ws = context.workspace
    data = tmp_path / "sft.jsonl"
    data.write_text("".join((shared_data / "sft.jsonl").read_text(encoding="utf-8").splitlines(True)[:500]),
                    encoding="utf-8")
    presenter = DatasetsPresenter(context)
    presenter.add_paths([data])
    with qtbot.waitSignal(presenter.tokenizerFinished, timeout=60_000) as done, \
            qtbot.waitSignal(context.datasetsChanged, timeout=60_000):
        presenter.train_tokenizer("mine", 400)
    assert done.args == [str(ws.tokenizers_dir / "mine")]
    assert MiniMindTokenizer.load(ws.tokenizers_dir / "mine").vocab_size <= 400
    assert presenter.tokenizer_dirs() == [ws.tokenizers_dir / "mine"]


def test_added_files_are_remembered_in_the_store(qtbot, context, tmp_path):
    from studio.context import StudioContext

    store = context.store
    data = tmp_path / "p.jsonl"
    data.write_text('{"text": "hello"}\n')
    first = DatasetsPresenter(context)
    with qtbot.waitSignal(first.fileOpened, timeout=10_000):
        first.add_paths([data])
        first.open(data)
    assert [(d.path, d.kind) for d in store.datasets()] == [(str(data), "pretrain")]
    again = DatasetsPresenter(StudioContext(context.workspace, store, context.runs))  # a studio restarted
    assert again.restore() == [data]
    first.shutdown()


def test_the_demo_guide_s_data_and_tokenizer_appear_in_the_datasets_pane(qtbot, context):
    """The found bug: after the guide trained the workspace's tokenizer, Datasets › Stats listed no tokenizer.
    The pane, already open, lists the guide's data files and its tokenizer as soon as each is made."""
    from PySide6.QtCore import Qt

    from core.demo import FAST
    from studio.main_window import MainWindow
    from studio.dialogs.first_run import FirstRunPresenter

    window = MainWindow(context, probe_device=False)
    qtbot.addWidget(window)
    pane = window.panes.get("Datasets")
    assert pane.stats_tokenizer.count() == 0 and pane.file_list.count() == 0
    guide = FirstRunPresenter(context, plan=FAST)
    with qtbot.waitSignal(context.launchRequested, timeout=60_000):  # data, tokenizer, then the pretrain run
        guide.start()
    demo = context.workspace.datasets_dir / "demo"
    files = {pane.file_list.item(i).data(Qt.UserRole) for i in range(pane.file_list.count())}
    assert str(demo / "pretrain.jsonl") in files and str(demo / "sft_tools.jsonl") in files
    tokenizers = [pane.stats_tokenizer.itemData(i) for i in range(pane.stats_tokenizer.count())]
    assert tokenizers == [str(context.workspace.tokenizers_dir / "demo")]
    guide.shutdown()
    pane.presenter.shutdown()
    window.close_policy = "keep"
    window.close()


def test_a_tokenizer_made_outside_the_studio_is_listed_when_the_stats_tab_is_shown(qtbot, context, tiny_tokenizer_dir):
    import shutil

    from studio.panes.datasets.view import DatasetsPane

    pane = DatasetsPane(context)
    qtbot.addWidget(pane)
    assert pane.stats_tokenizer.count() == 0
    shutil.copytree(tiny_tokenizer_dir, context.workspace.tokenizers_dir / "from-cli")  # no signal says so
    pane.tabs.setCurrentWidget(pane.stats_tab)
    assert pane.stats_tokenizer.itemData(0) == str(context.workspace.tokenizers_dir / "from-cli")


def test_the_validate_kind_list_is_cores_list_of_record_kinds(qtbot, context):
    from core.data.records import KINDS
    from core.methods import DATA_KINDS
    from studio.panes.datasets.view import DatasetsPane

    pane = DatasetsPane(context)
    qtbot.addWidget(pane)
    shown = [pane.validate_kind.itemText(i) for i in range(pane.validate_kind.count())]
    assert shown == list(KINDS) and "agent" in shown
    assert set(DATA_KINDS) <= set(KINDS)  # every kind a method trains on can be validated here


def test_a_parquet_file_pages_by_row_and_its_mapping_previews_the_loss_mask(qtbot, context, tmp_path,
                                                                            tiny_tokenizer_dir):
    datasets = pytest.importorskip("datasets")
    rows = [{"conversations": [{"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": f"answer {i}"}]}
            for i in range(45)]
    path = tmp_path / "sg.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path), batch_size=10)
    presenter = DatasetsPresenter(context, page_size=20)
    pages = []
    presenter.pageReady.connect(lambda page, html: pages.append((page, html)))
    with qtbot.waitSignal(presenter.mappingLoaded, timeout=30_000) as loaded:
        with qtbot.waitSignal(presenter.fileOpened, timeout=30_000):
            presenter.open(path)
        presenter.load_mapping()
    assert "answer 0" not in pages[0][1]  # page 1 at once, as raw rows: ShareGPT turns are no MiniMind messages
    assert presenter.kind == "sft" and presenter.page_count == 3
    assert pages[-1][0] == 0  # and again as records once the mapping is known
    assert "answer 0" in pages[-1][1] and "answer 19" in pages[-1][1] and "answer 20" not in pages[-1][1]
    presenter.show_page(2)
    assert pages[-1][0] == 2 and "answer 44" in pages[-1][1] and "answer 39" not in pages[-1][1]
    info = loaded.args[0]
    assert info["mapping"]["format"] == "sharegpt" and info["columns"] == ["conversations"]
    with qtbot.waitSignal(presenter.mappingPreviewed, timeout=30_000) as shown:
        presenter.preview_mapping(info["mapping"], 7, str(tiny_tokenizer_dir))
    html = shown.args[0]
    assert "<span style='background:#bbf7d0'>answer 7&lt;|im_end|&gt;\n</span>" in html
    assert "question 7" in html and "background:#bbf7d0'>question" not in html
    # a mapping that reads the wrong column names the row and the field
    bad = {**info["mapping"], "columns": {"messages": "dialog"}}
    with qtbot.waitSignal(presenter.mappingPreviewed, timeout=30_000) as shown:
        presenter.preview_mapping(bad, 7, str(tiny_tokenizer_dir))
    assert f"{path}:8: dialog: missing" in shown.args[0]
    presenter.shutdown()


def test_a_save_to_disk_folder_is_added_as_one_dataset_and_a_saved_mapping_is_kept(qtbot, context, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "data" / "pairs"
    datasets.Dataset.from_list([{"question": "2+2?", "chosen": "4", "rejected": "5"}]).save_to_disk(str(folder))
    presenter = DatasetsPresenter(context)
    assert presenter.add_paths([tmp_path / "data"]) == [folder]
    assert presenter.add_paths([folder / "state.json"]) == [folder]  # what the file dialog's Arrow filter picks
    with qtbot.waitSignal(presenter.fileOpened, timeout=30_000) as opened:
        presenter.open(folder)
    assert opened.args == [str(folder), "dpo"]
    mapping = {"format": "preference", "columns": {"prompt": "question"}}
    with qtbot.waitSignal(presenter.fileOpened, timeout=30_000):
        assert presenter.save_mapping(mapping) == tmp_path / "data" / "pairs.mapping.json"
    from core.data.formats import resolve_mapping

    assert resolve_mapping(folder).origin == "sidecar"
    assert [f.name for f in presenter.add_paths([tmp_path / "data"])] == ["pairs"]  # the sidecar is no dataset
    presenter.shutdown()
