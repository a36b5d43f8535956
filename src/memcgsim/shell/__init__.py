"""``memcgsim shell``: a shell session on the model, in the words of a real machine's shell."""

from memcgsim.shell.interp import COMMANDS, EXIT_PANIC, Shell, ShellExit
from memcgsim.shell.parse import Command, ShellSyntaxError, parse_line

__all__ = ["COMMANDS", "EXIT_PANIC", "Command", "Shell", "ShellExit", "ShellSyntaxError",
           "parse_line"]
