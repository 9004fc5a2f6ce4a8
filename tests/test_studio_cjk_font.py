"""Chinese text renders as glyphs, not boxes: a quarter of the demo data and chats is Chinese.

Qt takes its fallback fonts from fontconfig, so what matters is that the machine has a CJK font
(scripts/install.sh installs fonts-wqy-microhei). Without one every CJK character is drawn as the same box
("tofu"), so two different characters rendering to identical pixels is the symptom this test looks for.
"""
from __future__ import annotations

import pytest

INSTALL = "apt-get install fonts-wqy-microhei (scripts/install.sh does it)"


def _cjk_families() -> list[str]:
    from PySide6.QtGui import QFontDatabase

    return [f for f in QFontDatabase.families()
            if QFontDatabase.WritingSystem.SimplifiedChinese in QFontDatabase.writingSystems(f)]


def _rendered(text: str, family: str | None = None):
    from PySide6.QtWidgets import QLabel

    label = QLabel(f'<span style="font-family:{family}">{text}</span>' if family else text)
    label.setStyleSheet("background: white; color: black; font-size: 28px")
    label.adjustSize()
    return label.grab().toImage()


@pytest.mark.parametrize("family", [None, "monospace"])  # the app's default font, and tool calls' monospace
def test_two_different_chinese_characters_render_differently(qapp, family):
    if not _cjk_families():
        pytest.skip(f"no CJK font installed, Chinese text renders as boxes: {INSTALL}")
    hello, world = _rendered("你好", family), _rendered("世界", family)
    assert hello.size() == world.size()  # two full-width characters each: only the pixels can tell them apart
    assert hello != world, "two different CJK characters rendered identically (tofu boxes)"
    assert not _rendered("你好，世界", family).isNull()
