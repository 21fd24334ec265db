"""The console's dialogs, one module each: confirm, a form (new voice request, transfer, load
workflow, API key), help, a process's details, a transfer's details."""

from console.tui.screens._confirm import ConfirmScreen
from console.tui.screens._details import DetailsScreen
from console.tui.screens._form import FieldError, FormScreen
from console.tui.screens._help import HelpScreen
from console.tui.screens._transfer import TransferScreen, transfer_text

__all__ = ["ConfirmScreen", "DetailsScreen", "FieldError", "FormScreen", "HelpScreen", "TransferScreen", "transfer_text"]
