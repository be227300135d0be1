"""Stacked memory bars, one per device: weights, KV cache, compute, overhead and what stays free."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from qtapp.core.fit.plan import DeviceUse
from qtapp.ui.fit.model_card import human_bytes

PARTS = [
    ("weights_bytes", "Weights", "#2f7de1"), ("kv_bytes", "KV cache", "#e08a00"),
    ("compute_bytes", "Compute", "#8e5bc4"), ("overhead_bytes", "Overhead", "#8c939d"),
]  # fmt: skip
LIMIT_COLOUR = "#d64545"
ROW_H = 34
LEGEND_H = 22


class DeviceBars(QWidget):
    """``set_devices(uses, title)``; each bar is scaled to its device's free memory."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.uses: list[DeviceUse] = []
        self.title = ""
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(LEGEND_H + ROW_H)

    def set_devices(self, uses: list[DeviceUse], title: str = "") -> None:
        self.uses = [u for u in uses if u.total_bytes or u.free_bytes]
        self.title = title
        self.setFixedHeight(LEGEND_H + 20 + ROW_H * max(len(self.uses), 1))
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(600, LEGEND_H + 20 + ROW_H * max(len(self.uses), 1))

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().text().color()
        dim = self.palette().placeholderText().color()
        p.setPen(text)
        p.drawText(QRectF(0, 0, self.width(), 18), Qt.AlignmentFlag.AlignVCenter, self.title)
        # legend
        x = 0.0
        y = 20.0
        for _attr, label, colour in [*PARTS, ("", "Free", "")]:
            p.setPen(Qt.PenStyle.NoPen)
            if colour:
                p.setBrush(QColor(colour))
                p.drawRoundedRect(QRectF(x, y + 5, 12, 12), 2, 2)
            else:
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.setPen(QPen(dim, 1, Qt.PenStyle.DashLine))
                p.drawRoundedRect(QRectF(x, y + 5, 12, 12), 2, 2)
            p.setPen(dim)
            w = p.fontMetrics().horizontalAdvance(label) + 26
            p.drawText(QRectF(x + 16, y, w, LEGEND_H), Qt.AlignmentFlag.AlignVCenter, label)
            x += w
        if any(u.budget_bytes and u.device != "CPU" for u in self.uses):
            p.setPen(QPen(QColor(LIMIT_COLOUR), 2))
            p.drawLine(int(x + 6), int(y + 4), int(x + 6), int(y + 18))
            p.setPen(dim)
            label = "Usable (free minus the safety margin)"
            w = p.fontMetrics().horizontalAdvance(label) + 26
            p.drawText(QRectF(x + 16, y, w, LEGEND_H), Qt.AlignmentFlag.AlignVCenter, label)
        label_w = 70.0
        right_w = 240.0
        bar_w = max(self.width() - label_w - right_w - 8, 40)
        for i, u in enumerate(self.uses):
            top = 20 + LEGEND_H + i * ROW_H
            p.setPen(text)
            p.drawText(QRectF(0, top, label_w, 24), Qt.AlignmentFlag.AlignVCenter, u.device)
            cap = u.free_bytes or u.total_bytes or 1
            scale = bar_w / max(cap, u.total_bytes, 1)
            bx = label_w
            frame = QRectF(label_w, top + 3, bar_w, 18)
            p.setPen(QPen(dim, 1, Qt.PenStyle.DashLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(frame, 3, 3)
            p.setPen(Qt.PenStyle.NoPen)
            for attr, _label, colour in PARTS:
                w = getattr(u, attr) * scale
                if w <= 0:
                    continue
                p.setBrush(QColor(colour))
                p.drawRect(QRectF(bx, top + 3, max(w, 1.0), 18))
                bx += w
            if u.budget_bytes and u.device != "CPU":
                limit = label_w + u.budget_bytes * scale
                p.setPen(QPen(QColor(LIMIT_COLOUR), 2))
                p.drawLine(int(limit), int(top), int(limit), int(top + 24))
            over = u.budget_bytes and u.total_bytes > u.budget_bytes
            p.setPen(QColor("#d64545") if over else dim)
            free = (u.free_bytes - u.total_bytes) if u.free_bytes else None
            msg = f"{human_bytes(u.total_bytes)} used"
            if free is not None:
                msg += (
                    f", {human_bytes(free)} free"
                    if free >= 0
                    else ", over by " + human_bytes(-free)
                )
            p.drawText(
                QRectF(label_w + bar_w + 8, top, right_w, 24), Qt.AlignmentFlag.AlignVCenter, msg
            )
        p.end()
