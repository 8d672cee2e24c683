"""Qt pieces every dock shares: buttons, the scrolled dock layout, the weights-file chooser, workers that stop
with their dock."""
from __future__ import annotations

import time
import weakref

from napari.qt.threading import thread_worker
from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

BUNDLED, WEIGHTS_FILE = "bundled default", "weights file…"
STOP_WAIT_S = 5.0  # how long closing a dock waits for its running worker to stop (one step, stage or block)


def make_button(text: str, slot) -> QPushButton:
    """A push button wired to ``slot``."""
    widget = QPushButton(text)
    widget.clicked.connect(slot)
    return widget

def scrolled_layout(owner: QWidget) -> QVBoxLayout:
    """A vertical layout in a scroll area that fills ``owner``: however tall a dock's content, the
    main window fits a 1366 × 768 screen and the lower controls are a scroll away. It never scrolls sideways:
    the content fits a dock about 340 px wide, and the dock cannot be made narrower than its content.
    ``owner`` opens tabbed with the plugin's other docks (:func:`tab_with_plugin_docks`)."""
    inner, area = QWidget(), _VerticalScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(inner)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    tab_with_plugin_docks(owner)
    return QVBoxLayout(inner)


class _VerticalScrollArea(QScrollArea):
    """A scroll area as wide as its content at least (and its vertical scroll bar): nothing is cut at the side."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        content = self.widget().minimumSizeHint().width() if self.widget() is not None else 0
        return QSize(max(hint.width(), content + self.verticalScrollBar().sizeHint().width()), hint.height())


_PLUGIN_DOCKS: weakref.WeakSet = weakref.WeakSet()  # every dock content made by scrolled_layout


def tab_with_plugin_docks(widget: QWidget) -> None:
    """When napari puts ``widget`` in a dock of its main window (the Plugins menu does not tabify), the dock joins
    an open dock of this plugin in the same area as a tab, instead of splitting the area into slivers."""
    _PLUGIN_DOCKS.add(widget)
    _Docked(widget)


def _dock_of(widget: QWidget) -> QDockWidget | None:
    try:
        parent = widget.parentWidget()
    except RuntimeError:  # deleted meanwhile (its dock and window closed)
        return None
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _join_plugin_tabs(widget: QWidget) -> None:
    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating() or window.tabifiedDockWidgets(dock):
        return
    area = window.dockWidgetArea(dock)
    for other in list(_PLUGIN_DOCKS):
        other_dock = _dock_of(other) if other is not widget else None
        if (other_dock is not None and other_dock.parentWidget() is window and not other_dock.isFloating()
                and other_dock.isVisible() and window.dockWidgetArea(other_dock) == area):
            window.tabifyDockWidget(other_dock, dock)
            dock.show()
            dock.raise_()
            return


class _Docked(QObject):
    """Tabs ``widget``'s dock with the plugin's other docks once napari has put it in its main window."""

    def __init__(self, widget: QWidget):
        super().__init__(widget)
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.ParentChange and obj.parent() is not None:
            QTimer.singleShot(0, lambda: _join_plugin_tabs(obj))  # napari adds the dock to its window after this
        return False


class LayerCombo(QComboBox):
    """A layer picker for narrow docks: a long name is cut in the middle (``HE_kidney_…_moving``, so names that
    share a beginning still differ where they differ), the full name is its tooltip, and it shrinks with the dock."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(8)
        self.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.currentTextChanged.connect(self.setToolTip)

    def shown_text(self) -> str:
        """The current name as the closed picker shows it: elided in the middle to fit its text field."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideMiddle, field.width())

    def paintEvent(self, event) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


def browse_weights(parent: QWidget, path_edit: QLineEdit, choice: QComboBox) -> None:
    """Ask for a weights file; put it in ``path_edit`` and switch ``choice`` to the weights-file option."""
    path, _ = QFileDialog.getOpenFileName(parent, "Network weights", "", "safetensors (*.safetensors)")
    if path:
        path_edit.setText(path)
        choice.setCurrentText(WEIGHTS_FILE)


@thread_worker
def steps_worker(steps):
    """Generator worker running a step generator: yields its progress items, forwards what is sent (STOP), returns
    its result. The caller keeps ``steps`` and can close it once the worker stopped (:class:`DockJobs` cleanup)."""
    return (yield from steps)


class DockJobs:
    """A dock's background workers (``napari.qt.threading``), stopped when the dock closes.

    When the dock is closed (napari takes the widget out of its dock: it loses its parent) or destroyed (the
    viewer's window closes), every running worker is asked to stop (``quit``: a generator worker stops at its
    next yield, between two steps) and waited for up to :data:`STOP_WAIT_S`; from then on nothing such a worker
    emits reaches the dock (a late result changes no layer, progress touches no deleted widget), only its
    ``cleanup`` runs. Workers started later are not affected. Holds no reference to the dock, so a closed dock
    can be freed.
    """

    def __init__(self, dock: QWidget):
        self.running: list = []  # (worker, cleanup)
        self.dropped: list = []  # workers stopped by a close: what they emit goes nowhere
        _Unparented(dock, self.close)
        dock.destroyed.connect(lambda *_: self.close())

    def start(self, worker, cleanup=None, **slots):
        """Connect ``slots`` (signal name: a callable or a list of them) to ``worker``, to run unless the dock was
        closed meanwhile; ``cleanup`` (closing what the worker iterates) runs when it is aborted. Start it."""
        if cleanup is not None:
            worker.aborted.connect(cleanup)
        for name, targets in slots.items():
            for slot in targets if isinstance(targets, (list, tuple)) else [targets]:
                getattr(worker, name).connect(lambda *args, slot=slot: None if worker in self.dropped else slot(*args))
        self.running.append((worker, cleanup))
        worker.finished.connect(lambda: self.running.remove((worker, cleanup)))
        worker.start()
        return worker

    def close(self) -> None:
        """Stop every running worker (a bounded wait) and drop whatever they emit later."""
        stopping = [(worker, cleanup) for worker, cleanup in self.running if worker not in self.dropped]
        for worker, _ in stopping:
            self.dropped.append(worker)
            worker.quit()
        deadline = time.monotonic() + STOP_WAIT_S
        for worker, cleanup in stopping:
            while worker.is_running and time.monotonic() < deadline:
                time.sleep(0.01)
            if cleanup is not None and not worker.is_running:  # stopped: its generator is free to close here
                cleanup()


class _Unparented(QObject):
    """Calls ``on_close`` when ``dock`` loses its parent (napari's close button on a dock widget)."""

    def __init__(self, dock: QWidget, on_close):
        super().__init__(dock)
        self._on_close = on_close
        dock.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._on_close()
        return False
