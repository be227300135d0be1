"""The model card of the Fit page: what the GGUF is, read from its header, and its tensor types."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent
from PySide6.QtWidgets import QFormLayout, QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from qtapp.core.gguf.model import ModelInfo

_TYPE_COLOURS = ["#2f7de1", "#e07b00", "#3aa35b", "#9b59b6", "#d64545", "#16a2b8", "#8a6d3b",
                 "#7f8c8d"]  # fmt: skip


def human_bytes(n: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}" if unit != "KiB" else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


def human_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if n / size < 100 else f"{n / size:.0f}{unit}"
    return str(int(n))


class TypeHistogram(QWidget):
    """One horizontal bar per ggml tensor type, by bytes, labelled with count and size."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, int, int]] = []
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def set_histogram(self, hist: dict[str, tuple[int, int]]) -> None:
        self.rows = [(k, c, b) for k, (c, b) in hist.items()][:8]
        self.setFixedHeight(max(len(self.rows), 1) * 20 + 4)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(260, max(len(self.rows), 1) * 20 + 4)

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        total = max((b for _, _, b in self.rows), default=1) or 1
        label_w = 52
        text_w = 118
        bar_w = max(self.width() - label_w - text_w - 8, 20)
        fm = p.fontMetrics()
        for i, (name, count, nbytes) in enumerate(self.rows):
            y = 2 + i * 20
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(0, y, label_w, 18), Qt.AlignmentFlag.AlignVCenter, name)
            w = max(bar_w * nbytes / total, 2)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(_TYPE_COLOURS[i % len(_TYPE_COLOURS)]))
            p.drawRoundedRect(QRectF(label_w, y + 3, w, 12), 3, 3)
            p.setPen(self.palette().placeholderText().color())
            text = f"{count} · {human_bytes(nbytes)}"
            p.drawText(
                QRectF(label_w + bar_w + 8, y, text_w, 18),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                fm.elidedText(text, Qt.TextElideMode.ElideRight, text_w),
            )
        p.end()


class ModelCard(QFrame):
    """Architecture, parameters, attention layout, context, vocabulary, file type, size."""

    FIELDS = [("name", "Name"), ("arch", "Architecture"), ("params", "Parameters"),
              ("layers", "Layers"), ("heads", "Heads (KV)"), ("head_dim", "Head dims K / V"),
              ("experts", "Experts"), ("swa", "Sliding window"), ("recurrent", "Recurrent"),
              ("ctx", "Trained context"), ("vocab", "Vocabulary"), ("ftype", "File type"),
              ("size", "Size on disk")]  # fmt: skip

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        title = QLabel("Model")
        f = QFont(title.font())
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.15)
        title.setFont(f)
        layout.addWidget(title)
        form = QFormLayout()
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(3)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.values: dict[str, QLabel] = {}
        for key, label in self.FIELDS:
            value = QLabel("—")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self.values[key] = value
            name = QLabel(label)
            name.setStyleSheet("color: palette(placeholder-text);")
            form.addRow(name, value)
        layout.addLayout(form)
        hist_title = QLabel("Tensor types (count · bytes)")
        hist_title.setStyleSheet("color: palette(placeholder-text); margin-top: 6px;")
        layout.addWidget(hist_title)
        self.histogram = TypeHistogram()
        layout.addWidget(self.histogram)
        layout.addStretch(1)

    def clear(self) -> None:
        for value in self.values.values():
            value.setText("—")
        self.histogram.set_histogram({})

    def set_model(self, m: ModelInfo) -> None:
        v = self.values
        v["name"].setText(m.name)
        v["arch"].setText(m.architecture)
        params = human_count(m.n_params)
        if m.is_moe:
            params += f" total, {human_count(m.n_params_active)} active"
        v["params"].setText(params)
        v["layers"].setText(str(m.n_layer))
        heads = sorted(set(m.n_head))
        kv = sorted(set(h for h, r in zip(m.n_head_kv, m.recurrent_layers, strict=False) if not r))
        v["heads"].setText(f"{'/'.join(map(str, heads)) or '—'} ({'/'.join(map(str, kv)) or '—'})")
        v["head_dim"].setText(f"{m.head_dim_k} / {m.head_dim_v}")
        if m.is_moe:
            shared = f", {m.n_expert_shared} shared" if m.n_expert_shared else ""
            v["experts"].setText(f"{m.n_expert_used} of {m.n_expert} routed{shared}")
        else:
            v["experts"].setText("dense")
        n_swa = sum(m.swa_layers)
        v["swa"].setText(f"{n_swa} of {m.n_layer} layers, window {m.n_swa:,}" if n_swa else "none")
        n_rec = sum(m.recurrent_layers)
        if n_rec:
            s = m.ssm
            v["recurrent"].setText(
                f"{n_rec} of {m.n_layer} layers (state {s['state_size']}, conv {s['conv_kernel']})"
            )
        else:
            v["recurrent"].setText("none")
        v["ctx"].setText(f"{m.n_ctx_train:,} tokens")
        v["vocab"].setText(f"{m.n_vocab:,} tokens")
        v["ftype"].setText(f"{m.file_type} ({m.bpw:.2f} bits/weight)")
        size = human_bytes(m.size_on_disk)
        if len(m.shards) > 1:
            size += f" in {len(m.shards)} files"
        if m.allocated_on_disk < m.size_on_disk // 100:
            size += " (sparse test file)"
        v["size"].setText(size)
        self.histogram.set_histogram(m.type_histogram)
