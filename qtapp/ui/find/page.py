"""The Find a model page: a Hugging Face repo's GGUF files planned from their headers, a fit
badge per file and the recommended one, then a verified download of the chosen file.

All network and disk work runs in background calls (``qtapp.ui.common.background``); nothing
touches the network unless 'Allow downloads' is on in Settings.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.settings import Settings
from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import MIB, Device, devices_from_report, host_device, parse_gpu_spec
from qtapp.core.fit.host_memory import HostLoad
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import PlanInputs
from qtapp.core.remote.download import DownloadProgress, fetch_model
from qtapp.core.remote.fit import FileFit, RepoPlan, add_exact_memory, plan_repo
from qtapp.core.remote.listing import RepoListing, list_repo
from qtapp.core.remote.source import NETWORK_OFF_HINT, parse_source
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.progress import ProgressBar
from qtapp.ui.find.table import FileTable, human_bytes

log = logging.getLogger(__name__)


class Page(QWidget):
    key = "find"
    title = "Find a model"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        #: for tests and mirrors: the Hub to ask (None: HF_ENDPOINT, else huggingface.co)
        self.endpoint: str | None = None
        self.cache_dir: Path | None = None  # None: the Hugging Face cache (HF_HUB_CACHE, ...)
        self.listing: RepoListing | None = None
        self.plan: RepoPlan | None = None
        self.downloaded: Path | None = None
        self._call: BackgroundCall | None = None
        self._estimated: list[str] = []
        self._download: BackgroundCall | None = None
        self._busy = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 16)
        outer.setSpacing(10)
        title = QLabel("Find a model on Hugging Face")
        title.setObjectName("pageTitle")
        intro = QLabel(
            "Give a repo (owner/name) or a link to a .gguf file. QuantLens reads only the "
            "headers of its GGUF files (a few MiB each, every part of a split set), plans each "
            "file for your GPUs as the Fit page does, and downloads the one you choose into "
            "the Hugging Face cache, checked against the repo's sha256."
        )
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        outer.addWidget(title)
        outer.addWidget(intro)

        bar = QHBoxLayout()
        self.repo = QLineEdit()
        self.repo.setPlaceholderText("owner/name, e.g. unsloth/gemma-3-270m-it-GGUF, or a link")
        self.repo.setClearButtonEnabled(True)
        self.repo.returnPressed.connect(self.find)
        self.ctx_box = QSpinBox()
        self.ctx_box.setRange(256, 1 << 20)
        self.ctx_box.setSingleStep(1024)
        self.ctx_box.setPrefix("context ")
        self.ctx_box.setValue(Settings.load().default_ctx)
        self.ctx_box.setToolTip("The context length every file is planned at")
        self.gpus_box = QLineEdit()
        self.gpus_box.setPlaceholderText("detected")
        self.gpus_box.setToolTip(
            'What-if GPUs, e.g. "24GiB" or "2x48GiB"; empty: the detected ones'
        )
        self.gpus_box.setMaximumWidth(150)
        self.find_button = QPushButton("Plan its files")
        self.find_button.setObjectName("primary")
        self.find_button.clicked.connect(self.find)
        for box in (self.repo, self.ctx_box, self.gpus_box):  # one row height with the button
            box.setMinimumHeight(self.find_button.sizeHint().height())
        bar.addWidget(self.repo, 1)
        bar.addWidget(self.ctx_box)
        bar.addWidget(QLabel("GPUs"))
        bar.addWidget(self.gpus_box)
        bar.addWidget(self.find_button)
        outer.addLayout(bar)

        self.table = FileTable()
        self.table.itemSelectionChanged.connect(self._selection_changed)
        outer.addWidget(self.table, 1)
        self.why = QLabel("")
        self.why.setWordWrap(True)
        self.why.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.why)

        actions = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("primary")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.plan_button = QPushButton("Open its plan")
        self.plan_button.setToolTip(
            "Open the file's header on the Fit page: every quant type, exact figures from "
            "llama.cpp's dry runs, before downloading anything more"
        )
        self.plan_button.setEnabled(False)
        self.plan_button.clicked.connect(self.open_plan)
        self.open_button = QPushButton("Open the downloaded model")
        self.open_button.hide()
        self.open_button.clicked.connect(self.open_downloaded)
        self.settings_button = QPushButton("Allow downloads…")
        self.settings_button.hide()
        self.settings_button.clicked.connect(lambda: self.ctx.navigate.emit("settings"))
        for w in (self.download_button, self.cancel_button, self.plan_button, self.open_button):
            actions.addWidget(w)
        actions.addWidget(self.settings_button)
        actions.addStretch(1)
        outer.addLayout(actions)

        self.progress = ProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress.hide()
        outer.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status)

    # -- planning ------------------------------------------------------------------------------
    def _online(self) -> bool:
        if Settings.load().network_allowed:
            self.settings_button.hide()
            return True
        self.status.setText(f"Downloads are off. {NETWORK_OFF_HINT}")
        self.settings_button.show()
        return False

    def _gpus(self) -> list[Device]:
        text = self.gpus_box.text().strip()
        if text:
            return parse_gpu_spec(text)
        return devices_from_report(self.ctx.hardware)

    def busy(self) -> bool:
        """A plan or a download runs (set and cleared with the buttons, on the GUI thread)."""
        return self._busy

    def find(self) -> None:
        text = self.repo.text().strip()
        if not text or self.busy():
            return
        try:
            ref = parse_source(text, self.endpoint)
            gpus = self._gpus()
        except QuantLensError as exc:
            self.status.setText(str(exc))
            return
        if not self._online():
            return
        settings = Settings.load()
        kv = settings.kv_type
        cs = ContextSettings(n_ctx=self.ctx_box.value(), type_k=kv, type_v=kv)
        host = host_device(self.ctx.hardware)
        margin = settings.gpu_margin_mib * MIB

        estimated: list[str] = []  # files whose KV / compute stayed estimates
        self._estimated = estimated

        def inputs_for(path: Path) -> PlanInputs:
            from qtapp.core.fit.sources import read_plan_sources

            s = read_plan_sources(path, warm_up=False)
            inp = PlanInputs(
                s.model, cs, gpus, host, margin=margin, weights=s.weights, quality=s.quality,
                recipes=s.recipes, speeds=s.speeds, load=HostLoad("mmap", s.repack),
            )  # fmt: skip
            why = add_exact_memory(inp)  # as the CLI: llama.cpp's own KV / compute sizes
            if why is not None:
                log.warning("%s: exact KV / compute unavailable (%s)", path.name, why)
                estimated.append(path.name)
            return inp

        def task(call: BackgroundCall) -> RepoPlan:
            call.report(0.0, f"Listing {ref.repo_id}…")
            listing = list_repo(ref)
            call.emit_item(listing)
            models = [listing.find(ref.path)] if ref.path else listing.models
            listing = RepoListing(
                listing.ref, listing.commit, models, listing.gated, listing.skipped
            )

            def progress(i: int, n: int, name: str) -> None:
                call.report(i / max(n, 1), f"Reading the header of {name} ({i + 1} of {n})…")

            return plan_repo(
                listing, inputs_for, progress=progress, on_file=call.emit_item,
                should_stop=call.should_stop,
            )  # fmt: skip

        self.plan = None
        self.listing = None
        self.table.clear_files(gpu_less=not gpus)
        self.why.setText("")
        self.open_button.hide()
        self._set_busy(True)
        self.status.setText(f"Listing {ref.repo_id}…")
        self._call = BackgroundCall(task, "find-plan", self)
        self._call.progress.connect(self._progress)
        self._call.item.connect(self._item)
        self._call.finished.connect(self._planned)
        self._call.failed.connect(self._failed)
        self._call.start()

    def _item(self, item: object) -> None:
        if isinstance(item, RepoListing):
            self.listing = item
        elif isinstance(item, FileFit):
            self.table.add_file(item)

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def _planned(self, plan: RepoPlan) -> None:
        self.plan = plan
        self._set_busy(False)
        self.table.mark_recommended(plan.recommended)
        gpus = "your GPUs" if not self.gpus_box.text().strip() else self.gpus_box.text().strip()
        why = html.escape(plan.why)
        if plan.recommended:  # the explanation starts with the file's name: said once, in bold
            name = html.escape(plan.recommended)
            rest = why.removeprefix(name + " ")
            why = f"<b>Recommended: {name}</b> " + (rest if rest != why else f"— {why}")
        self.why.setText(why)
        n = len(plan.files)
        self.status.setText(
            f"{plan.listing.repo_id}: {n} model file{'s' if n != 1 else ''} planned at context "
            f"{self.ctx_box.value():,} for {gpus}, from {human_bytes(plan.stats.bytes)} of "
            f"headers ({plan.stats.requests} range requests)."
            + (" The repo is gated: downloads need HF_TOKEN." if plan.listing.gated else "")
            + (
                f" KV cache and compute are estimates for {', '.join(self._estimated)} (llama.cpp"
                " could not load the header; see the log)."
                if self._estimated
                else " KV cache and compute: llama.cpp's own sizes (a no-alloc load per header)."
            )
        )
        self._selection_changed()

    def _failed(self, message: str) -> None:
        self._set_busy(False)
        self.status.setText(message)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.find_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        self.progress.setValue(0)
        if busy:
            self.download_button.setEnabled(False)
            self.plan_button.setEnabled(False)

    def _selection_changed(self) -> None:
        fit = self.table.selected()
        ok = fit is not None and fit.error is None and not self.busy()
        self.download_button.setEnabled(ok)
        self.plan_button.setEnabled(ok and fit is not None and fit.header is not None)
        if fit is not None:
            self.download_button.setText(f"Download {human_bytes(fit.model.size)}")

    # -- downloading ---------------------------------------------------------------------------
    def download(self) -> None:
        fit = self.table.selected()
        listing = self.plan.listing if self.plan is not None else None
        if fit is None or listing is None or self.busy() or not self._online():
            return
        cache = self.cache_dir

        def task(call: BackgroundCall) -> Path:
            def show(p: DownloadProgress) -> None:
                call.report(p.fraction, f"{fit.model.name}: {p.text()}")

            return fetch_model(listing, fit.model, True, cache, progress=show,
                               should_stop=call.should_stop)  # fmt: skip

        self._set_busy(True)
        self.status.setText(f"Downloading {fit.model.name}…")
        self._download = BackgroundCall(task, "find-download", self)
        self._download.progress.connect(self._progress)
        self._download.finished.connect(self._downloaded)
        self._download.failed.connect(self._failed)
        self._download.start()

    def _downloaded(self, path: Path) -> None:
        self._set_busy(False)
        self.downloaded = path
        self.open_button.show()
        self.status.setText(f"Downloaded and verified (sha256): {path}")
        self.ctx.status.emit(f"Downloaded {path.name}")
        self._selection_changed()

    def cancel(self) -> None:
        for call in (self._call, self._download):
            if call is not None:
                call.cancel()

    def open_plan(self) -> None:
        fit = self.table.selected()
        if fit is not None and fit.header is not None:
            self.ctx.open_model(fit.header)
            self.ctx.navigate.emit("fit")

    def open_downloaded(self) -> None:
        if self.downloaded is not None:
            self.ctx.open_model(self.downloaded)
            self.ctx.navigate.emit("fit")

    def shutdown(self) -> None:
        self.cancel()
        for call in (self._call, self._download):
            if call is not None:
                call.wait()
