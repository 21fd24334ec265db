"""The console's widgets, one module each (as Textual's own `textual.widgets`). Lists that
grow large or change often are `RowList`s, which render only their visible lines."""

from console.tui.widgets._columns import (
                                          FLEX_FLOOR,
                                          FLEX_LEAST,
                                          CellValue,
                                          Column,
                                          Part,
                                          Row,
                                          cell_parts,
                                          column_layout,
                                          progress_cell,
)
from console.tui.widgets._header_bar import HeaderBar
from console.tui.widgets._key_bar import KeyBar
from console.tui.widgets._line_frame import LineFrame
from console.tui.widgets._owner_banner import OwnerBanner
from console.tui.widgets._pane_deck import BREAKPOINTS, WIDE_FROM, PaneDeck
from console.tui.widgets._row_list import RowList
from console.tui.widgets._status_bar import StatusBar, fit_parts
from console.tui.widgets._text import clean, literal, sparkline, time_of_day
from console.tui.widgets._text_line import TextLine

__all__ = [
    "BREAKPOINTS", "FLEX_FLOOR", "FLEX_LEAST", "WIDE_FROM", "CellValue", "Column", "HeaderBar", "KeyBar", "LineFrame",
    "OwnerBanner", "PaneDeck", "Part", "Row", "RowList", "StatusBar", "TextLine", "cell_parts", "clean",
    "column_layout", "fit_parts", "literal", "progress_cell", "sparkline", "time_of_day",
]
