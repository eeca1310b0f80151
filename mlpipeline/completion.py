"""Shell completion for bash and zsh, generated from the command's own parsers, so it always
offers what ``mlpipeline --help`` and each command's ``--help`` list:
``eval "$(mlpipeline completion bash)"`` (or ``zsh``) in the shell's start-up file."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    import argparse

SHELLS = ("bash", "zsh")


def _options(parser: "argparse.ArgumentParser") -> List[str]:
    return sorted(option for action in parser._actions for option in action.option_strings if action.help != "==SUPPRESS==")


def completion_script(shell: str) -> str:
    """The completion script for ``shell`` (bash, or zsh through its bash compatibility)."""
    from mlpipeline.commands import COMMANDS, build_command_parser, build_parser

    commands = list(COMMANDS)
    per_command: Dict[str, List[str]] = {name: _options(build_command_parser(name)) for name in COMMANDS}
    per_command["completion"] = list(SHELLS)  # its one argument is a shell, not an option
    cases = "\n".join(f'        {name}) words="{" ".join(options)}" ;;' for name, options in per_command.items())
    script = f"""# mlpipeline completion for {shell}, made by `mlpipeline completion {shell}`
_mlpipeline() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" command="" words word
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " {" ".join(commands)} " in *" $word "*) command="$word"; break ;; esac
    done
    case "$prev" in
        -C) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -o) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "$command" in
{cases}
        *) words="{" ".join(_options(build_parser()) + commands)}" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _mlpipeline mlpipeline
"""
    if shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script
